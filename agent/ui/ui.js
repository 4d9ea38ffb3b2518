// shoal's teaching UI: polls /v1/ui/state once a second and draws who sees whom.
// Hand-written, no build step, no library: everything is plain DOM calls, and text is
// always set with textContent (member names come from the network).
"use strict";

(function () {
  const STATE_URL = "/v1/ui/state";
  const CHAOS_URL = "/v1/ui/chaos";
  const POLL_MS = 1000;
  const TOKEN_KEY = "shoal.token";

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function headers() {
    const h = { "Accept": "application/json" };
    const secret = token();
    if (secret) {
      h["X-Nomad-Token"] = secret;
    }
    return h;
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) {
        node.setAttribute(name, String(value));
      }
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function setSummary(text, kind) {
    const summary = document.getElementById("summary");
    summary.textContent = text;
    summary.setAttribute("data-kind", kind);
  }

  // --- the matrix ---------------------------------------------------------------

  function drawMatrix(state) {
    const table = document.getElementById("matrix");
    const headRow = el("tr");
    headRow.appendChild(el("th", { scope: "col" }, "observer \\ member"));
    for (const member of state.Members) {
      headRow.appendChild(el("th", { scope: "col", "data-member": member.Name,
                                     "data-kind": member.Kind }, member.Name));
    }
    table.tHead.replaceChildren(headRow);

    const rows = [];
    for (const observer of state.Observers) {
      const row = el("tr", { "data-observer": observer.Name,
                             "data-reachable": observer.Reachable ? "true" : "false" });
      const label = el("th", { scope: "row", "data-observer": observer.Name }, observer.Name);
      if (!observer.Reachable) {
        label.appendChild(el("span", { class: "why" }, observer.Error));
      }
      row.appendChild(label);
      for (const member of state.Members) {
        row.appendChild(drawCell(observer, member.Name));
      }
      rows.push(row);
    }
    table.tBodies[0].replaceChildren(...rows);
  }

  function drawCell(observer, memberName) {
    const cell = observer.Members[memberName];
    const status = cell ? cell.Status : (observer.Reachable ? "unknown" : "unreachable");
    const incarnation = cell && cell.Incarnation !== null ? cell.Incarnation : "unknown";
    const td = el("td", {
      "data-observer": observer.Name,
      "data-member": memberName,
      "data-status": status,
      "data-incarnation": cell ? incarnation : null,
      "data-addr": cell ? cell.Addr : null,
      title: cell ? "incarnation " + incarnation : observer.Error || "not in this view",
      "aria-label": observer.Name + " sees " + memberName + " " + status,
    }, cell ? status : (observer.Reachable ? "—" : "?"));
    return td;
  }

  // --- the servers table ------------------------------------------------------------

  function describeWorkers(workers) {
    const parts = Object.entries(workers || {}).map(([status, count]) => count + " " + status);
    return parts.length ? parts.join(", ") : "—";
  }

  function describeRules(faults) {
    if (!faults) {
      return "?";
    }
    if (!faults.Enabled) {
      return "off";
    }
    const rules = faults.Rules;
    if (!rules) {
      return "none";
    }
    const parts = [];
    if (rules.Partitions.length) {
      parts.push("partitions " + rules.Partitions.map((g) => "[" + g.join(", ") + "]").join(" "));
    }
    if (rules.Loss) {
      parts.push("loss " + Math.round(rules.Loss * 1000) / 10 + "%");
    }
    if (rules.DelayMs) {
      parts.push("delay " + rules.DelayMs + " ms");
    }
    if (rules.DropTo.length) {
      parts.push("drop to " + rules.DropTo.join(", "));
    }
    if (rules.DropFrom.length) {
      parts.push("drop from " + rules.DropFrom.join(", "));
    }
    return parts.length ? parts.join("; ") : "none";
  }

  function drawServers(state) {
    const rows = [];
    for (const observer of state.Observers) {
      const raft = observer.Raft || {};
      const row = el("tr", { "data-server": observer.Name });
      row.appendChild(el("th", { scope: "row" }, observer.Name));
      row.appendChild(el("td", { "data-server": observer.Name, "data-field": "role",
                                 "data-role": raft.State || "" }, raft.State || "?"));
      row.appendChild(el("td", { "data-server": observer.Name, "data-field": "term" },
                         raft.Term === undefined ? "?" : raft.Term));
      row.appendChild(el("td", { "data-server": observer.Name, "data-field": "leader" },
                         raft.Leader || (observer.Raft ? "none" : "?")));
      row.appendChild(el("td", { "data-server": observer.Name, "data-field": "workers" },
                         describeWorkers(observer.Workers)));
      row.appendChild(el("td", { "data-server": observer.Name, "data-field": "faults" },
                         describeRules(observer.Faults)));
      rows.push(row);
    }
    document.querySelector("#servers tbody").replaceChildren(...rows);
  }

  // --- chaos --------------------------------------------------------------------------

  function drawChaos(state) {
    const section = document.getElementById("chaos");
    section.hidden = !state.FaultInjection;
    const select = document.getElementById("chaos-member");
    const chosen = select.value;
    const options = state.Members.map((m) => el("option", { value: m.Name, "data-kind": m.Kind },
                                                 m.Name + (m.Kind === "server" ? "" : " (serf)")));
    select.replaceChildren(...options);
    if (state.Members.some((m) => m.Name === chosen)) {
      select.value = chosen;
    }
  }

  async function chaos(button) {
    const action = button.getAttribute("data-action");
    const body = { Action: action };
    if (action !== "heal") {
      body.Member = document.getElementById("chaos-member").value;
    }
    if (button.hasAttribute("data-percent")) {
      body.Percent = Number(button.getAttribute("data-percent"));
    }
    const result = document.getElementById("chaos-result");
    result.textContent = action + "…";
    try {
      const response = await fetch(CHAOS_URL, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, headers()),
        body: JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) {
        result.textContent = action + " refused (" + response.status + "): " + text;
        return;
      }
      const answer = JSON.parse(text);
      const failed = Object.entries(answer.Failed);
      result.textContent = action + (answer.Member ? " " + answer.Member : "") +
        ": rules changed on " + (answer.Applied.join(", ") || "no server") +
        (failed.length ? "; not reached: " + failed.map(([n, e]) => n + " (" + e + ")").join(", ") : "");
    } catch (error) {
      result.textContent = action + " failed: " + error;
    }
  }

  // --- polling -------------------------------------------------------------------------

  async function poll() {
    try {
      const response = await fetch(STATE_URL, { headers: headers(), cache: "no-store" });
      const text = await response.text();
      if (response.status === 403) {
        setSummary("the view needs an ACL token with agent:read (" + text + "): paste one below", "error");
      } else if (!response.ok) {
        setSummary("error " + response.status + ": " + text, "error");
      } else {
        const state = JSON.parse(text);
        drawMatrix(state);
        drawServers(state);
        drawChaos(state);
        const reachable = state.Observers.filter((o) => o.Reachable).length;
        const servedBy = state.RelayedBy ? state.RelayedBy + " (client) through " + state.Observer
                                         : state.Observer;
        setSummary("served by " + servedBy + " · " + state.Members.length + " members · " +
                   reachable + "/" + state.Observers.length + " servers answered · updated " +
                   new Date().toLocaleTimeString(), "ok");
        document.body.setAttribute("data-loaded", "true");
      }
    } catch (error) {
      setSummary("agent unreachable: " + error, "error");
    }
    window.setTimeout(poll, POLL_MS);
  }

  function start() {
    const input = document.getElementById("token");
    input.value = token();
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      window.sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    });
    document.getElementById("token-clear").addEventListener("click", () => {
      window.sessionStorage.removeItem(TOKEN_KEY);
      input.value = "";
    });
    for (const button of document.querySelectorAll("#chaos-form button")) {
      button.addEventListener("click", () => chaos(button));
    }
    poll();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
