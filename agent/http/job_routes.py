"""Routes for simulated jobs and what the schedulers made of them: jobs, nodes, evaluations,
allocations (issue 4, item 6).

``register_job_routes(app, api)`` adds them to the app of ``agent.http.app``, answering
as the other routes do: the method checked first ("Invalid method", 405), compact JSON
(``?pretty`` indents), one-line plain-text errors. Decisions stay in the facade
(``AgentAPI``): a job is checked and given its defaults by ``agent.jobspec.parse_job``
here (400 with its one-line reason, nothing sent to the servers), then handed to
``api.register_job``; reads become state-store queries (``api.state_read``, the query
names of docs/internals.md) and answer with Nomad's shapes and headers.

Nomad details kept (``command/agent/job_endpoint.go``, ``node_endpoint.go``,
``eval_endpoint.go``, ``alloc_endpoint.go``):
- Reads set ``X-Nomad-Index``, ``X-Nomad-KnownLeader`` and ``X-Nomad-LastContact``,
  also on their 404s ("job not found", "node not found", "eval not found",
  "alloc not found"); writes set ``X-Nomad-Index``.
- ``PUT /v1/job/<id>`` registers too, and refuses a body whose ID differs:
  "Job ID does not match name". A job without a Namespace takes ``?namespace=``.
- ``DELETE /v1/job/<id>?purge=`` parses ``purge`` as Go's ParseBool.
- Lists take ``?prefix=`` (on IDs) and are sorted by ID; ``GET /v1/jobs`` answers
  ``JobListStub``s and ``GET /v1/nodes`` ``NodeListStub``s.
- A client-only agent has no servers to forward to yet: 500 "no servers" (after
  the method and body checks: a bad job is refused without asking any server).
- ACLs (docs/acl.md): job reads need the namespace's ``read-job`` (the list
  ``list-jobs``), register and deregister ``submit-job``; nodes need node:read;
  evaluation and allocation reads need ``read-job`` in the record's namespace, and
  lists over ``namespace=*`` (or a node's allocations) show only permitted namespaces.
"""

from __future__ import annotations

from typing import Any, Protocol

from quart import Response, request
from quart_trio import QuartTrio

from ..config import parse_go_bool
from ..jobspec import JobSpecError, job_stub, parse_job
from .api import ApiError
from .app import ALL_METHODS, AgentFacade, _require_method, check_query_options, json_response
from .auth import acl_enabled, request_token, require, resolve_acl
from .cluster_routes import _is_stale, _json_body, _with_index, _with_read_meta

__all__ = ["register_job_routes", "JobFacade", "node_stub"]

_TEXT = "text/plain; charset=utf-8"


class JobFacade(AgentFacade, Protocol):
    """What these routes need of ``AgentAPI``."""

    async def register_job(self, job: dict[str, Any]) -> dict[str, Any]: ...

    async def deregister_job(self, job_id: str, namespace: str, purge: bool) -> dict[str, Any]: ...

    async def state_read(self, query: dict[str, Any], stale: bool) -> dict[str, Any]: ...


def register_job_routes(app: QuartTrio, api: JobFacade) -> None:
    """Add ``/v1/jobs``, ``/v1/job/*``, ``/v1/nodes``, ``/v1/node/*``, ``/v1/evaluations``,
    ``/v1/evaluation/*``, ``/v1/allocations`` and ``/v1/allocation/*``. Twice is a no-op."""
    if app.extensions.get("shoal.job_routes"):
        return
    app.extensions["shoal.job_routes"] = True
    _register_jobs(app, api)
    _register_reads(app, api)


# --- jobs ---------------------------------------------------------------------------------


def _register_jobs(app: QuartTrio, api: JobFacade) -> None:
    @app.route("/v1/jobs", methods=ALL_METHODS)
    async def jobs() -> Response:
        _require_method("GET", "PUT", "POST")
        if request.method == "GET":
            _require_servers(api)
            check_query_options()
            await _require_namespace(api, "list-jobs")
            result = await _read(api, {"Type": "job_list", "Namespace": _namespace(),
                                       "Prefix": _prefix()})
            stubs = await _visible(api, [job_stub(job) for job in _listed(result, "Jobs")], "list-jobs")
            return _with_read_meta(json_response(stubs), result)
        return await _register(api, None)

    @app.route("/v1/job/<path:rest>", methods=ALL_METHODS, merge_slashes=False)
    async def job(rest: str) -> Response:
        for suffix, query_type, key in (("/allocations", "job_allocs", "Allocs"),
                                        ("/evaluations", "job_evals", "Evals")):
            if rest.endswith(suffix) and rest != suffix.lstrip("/"):
                _require_method("GET")
                _require_servers(api)
                check_query_options()
                await _require_namespace(api, "read-job")
                query = {"Type": query_type, "JobID": rest[:-len(suffix)],
                         "Namespace": _namespace()}
                result = await _read(api, query)
                return _with_read_meta(json_response(_listed(result, key)), result)
        _require_method("GET", "PUT", "POST", "DELETE")
        if request.method == "GET":
            _require_servers(api)
            check_query_options()
            await _require_namespace(api, "read-job")
            result = await _read(api, {"Type": "job_get", "JobID": rest,
                                       "Namespace": _namespace()})
            return _found_or_404(result, "Job", "job not found")
        if request.method == "DELETE":
            return await _deregister(api, rest)
        return await _register(api, rest)


async def _register(api: JobFacade, url_id: str | None) -> Response:
    body = await _json_body()
    try:
        job = parse_job(body)
    except JobSpecError as exc:
        raise ApiError(400, _one_line(str(exc))) from None
    if url_id is not None and job["ID"] != url_id:
        raise ApiError(400, "Job ID does not match name")
    raw = body["Job"] if "Job" in body else body
    if not raw.get("Namespace") and request.args.get("namespace"):
        job["Namespace"] = request.args["namespace"]
    await require(api, f"namespace:{job['Namespace']}:submit-job")
    _require_servers(api)
    result = _checked(await api.register_job(job))
    answer = {"EvalID": result.get("EvalID", ""),
              "EvalCreateIndex": result.get("EvalCreateIndex", 0),
              "JobModifyIndex": result.get("JobModifyIndex", 0),
              "Warnings": result.get("Warnings", ""),
              "Index": result.get("Index", 0), "LastContact": 0, "KnownLeader": False,
              "NextToken": ""}
    return _with_index(json_response(answer), answer["Index"])


async def _deregister(api: JobFacade, job_id: str) -> Response:
    text = request.args.get("purge", "")
    try:
        purge = parse_go_bool(text) if text != "" else False
    except ValueError as exc:
        raise ApiError(400, f'Failed to parse value of "purge" ({text}) as a bool: {exc}') from None
    await require(api, f"namespace:{_namespace()}:submit-job")
    _require_servers(api)
    result = _checked(await api.deregister_job(job_id, _namespace(), purge))
    answer = {"EvalID": result.get("EvalID", ""),
              "EvalCreateIndex": result.get("EvalCreateIndex", 0),
              "JobModifyIndex": result.get("JobModifyIndex", 0),
              "VolumeEvalID": "", "VolumeEvalIndex": 0,
              "Index": result.get("Index", 0), "LastContact": 0, "KnownLeader": False,
              "NextToken": ""}
    return _with_index(json_response(answer), answer["Index"])


# --- nodes, evaluations, allocations ------------------------------------------------------


def _register_reads(app: QuartTrio, api: JobFacade) -> None:
    @app.route("/v1/nodes", methods=ALL_METHODS)
    async def nodes() -> Response:
        result = await _list_read(api, {"Type": "node_list", "Prefix": _prefix()}, "node:read")
        with_resources = _flag("resources")
        stubs = [node_stub(node, with_resources) for node in _listed(result, "Nodes")]
        return _with_read_meta(json_response(stubs), result)

    @app.route("/v1/node/<path:rest>", methods=ALL_METHODS, merge_slashes=False)
    async def node(rest: str) -> Response:
        if rest.endswith("/allocations") and rest != "allocations":
            result = await _list_read(api, {"Type": "alloc_list",
                                            "NodeID": rest[:-len("/allocations")]}, "node:read")
            allocs = await _visible(api, _listed(result, "Allocs"), "read-job")
            return _with_read_meta(json_response(allocs), result)
        result = await _list_read(api, {"Type": "node_get", "NodeID": rest}, "node:read")
        return _found_or_404(result, "Node", "node not found")

    @app.route("/v1/evaluations", methods=ALL_METHODS)
    async def evaluations() -> Response:
        result = await _list_read(api, {"Type": "eval_list", "Namespace": _namespace(),
                                        "Prefix": _prefix()}, namespace_capability="read-job")
        evals = await _visible(api, _listed(result, "Evals"), "read-job")
        return _with_read_meta(json_response(evals), result)

    @app.route("/v1/evaluation/<path:eval_id>", methods=ALL_METHODS, merge_slashes=False)
    async def evaluation(eval_id: str) -> Response:
        result = await _list_read(api, {"Type": "eval_get", "EvalID": eval_id})
        await _require_record_namespace(api, result.get("Eval"), "read-job")
        return _found_or_404(result, "Eval", "eval not found")

    @app.route("/v1/allocations", methods=ALL_METHODS)
    async def allocations() -> Response:
        result = await _list_read(api, {"Type": "alloc_list", "Namespace": _namespace(),
                                        "Prefix": _prefix()}, namespace_capability="read-job")
        allocs = await _visible(api, _listed(result, "Allocs"), "read-job")
        return _with_read_meta(json_response(allocs), result)

    @app.route("/v1/allocation/<path:alloc_id>", methods=ALL_METHODS, merge_slashes=False)
    async def allocation(alloc_id: str) -> Response:
        result = await _list_read(api, {"Type": "alloc_get", "AllocID": alloc_id})
        await _require_record_namespace(api, result.get("Alloc"), "read-job")
        return _found_or_404(result, "Alloc", "alloc not found")


def node_stub(node: dict[str, Any], with_resources: bool = False) -> dict[str, Any]:
    """Nomad's ``NodeListStub`` (NodeResources only with ``?resources=true``)."""
    http_addr = str(node.get("HTTPAddr", ""))
    address = node.get("Address", http_addr.rpartition(":")[0].strip("[]") if ":" in http_addr
                       else http_addr)
    stub = {"Address": address,
            "ID": node.get("ID", ""), "Attributes": node.get("Attributes") or {},
            "Datacenter": node.get("Datacenter", ""), "Name": node.get("Name", ""),
            "NodeClass": node.get("NodeClass", ""), "NodePool": "default", "Version": "",
            "Drain": False, "SchedulingEligibility": node.get("SchedulingEligibility", "eligible"),
            "Status": node.get("Status", ""), "StatusDescription": "",
            "CreateIndex": node.get("CreateIndex", 0), "ModifyIndex": node.get("ModifyIndex", 0)}
    if with_resources:
        stub["NodeResources"] = node.get("NodeResources") or {}
    return stub


# --- helpers ------------------------------------------------------------------------------


async def _list_read(api: JobFacade, query: dict[str, Any], capability: str | None = None, *,
                     namespace_capability: str | None = None) -> dict[str, Any]:
    """A GET-only read: method, servers, query options, the ACL, then the state query."""
    _require_method("GET")
    _require_servers(api)
    check_query_options()
    if capability is not None:
        await require(api, capability)
    if namespace_capability is not None:
        await _require_namespace(api, namespace_capability)
    return await _read(api, query)


async def _require_namespace(api: Any, capability: str) -> None:
    """The ``?namespace=`` capability; for ``*`` only a valid token (results are filtered)."""
    namespace = _namespace()
    if namespace == "*":
        if acl_enabled(api):
            await resolve_acl(api, request_token())
        return
    await require(api, f"namespace:{namespace}:{capability}")


async def _visible(api: Any, records: list[dict[str, Any]], capability: str) -> list[dict[str, Any]]:
    """The records whose Namespace grants ``capability`` (all of them with ACLs off)."""
    if not acl_enabled(api):
        return records
    acl = await resolve_acl(api, request_token())
    return [r for r in records if acl.allows(f"namespace:{r.get('Namespace', 'default')}:{capability}")]


async def _require_record_namespace(api: Any, record: dict[str, Any] | None, capability: str) -> None:
    """403 unless the token may ``capability`` in the record's namespace (any token for none)."""
    if not acl_enabled(api):
        return
    if record is None:
        await resolve_acl(api, request_token())
        return
    await require(api, f"namespace:{record.get('Namespace', 'default')}:{capability}")


async def _read(api: JobFacade, query: dict[str, Any]) -> dict[str, Any]:
    result = await api.state_read(query, _is_stale())
    if not isinstance(result, dict):
        raise ApiError(500, "state query answered no result")
    if "Error" in result:
        raise ApiError(400, _one_line(str(result["Error"])))
    return result


def _checked(result: Any) -> dict[str, Any]:
    """A write's result; ``{"Error": msg}`` (refused by the state machine) becomes a 400,
    or a 404 when the message says something was not found."""
    if not isinstance(result, dict):
        raise ApiError(500, "write answered no result")
    if result.get("Error"):
        message = _one_line(str(result["Error"]))
        raise ApiError(404 if message.endswith("not found") else 400, message)
    return result


def _listed(result: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The result's records whose ID has ``?prefix=``, sorted by ID (and namespace)."""
    prefix = _prefix()
    records = [r for r in result.get(key) or [] if str(r.get("ID", "")).startswith(prefix)]
    records.sort(key=lambda r: (str(r.get("ID", "")), str(r.get("Namespace", ""))))
    return records


def _found_or_404(result: dict[str, Any], key: str, message: str) -> Response:
    record = result.get(key)
    if record is None:
        response = Response(message.encode(), status=404, content_type=_TEXT)
        return _with_read_meta(response, result)
    return _with_read_meta(json_response(record), result)


def _namespace() -> str:
    return request.args.get("namespace", "") or "default"


def _prefix() -> str:
    return request.args.get("prefix", "")


def _flag(name: str) -> bool:
    text = request.args.get(name)
    if text is None:
        return False
    try:
        return text == "" or parse_go_bool(text)
    except ValueError:
        raise ApiError(400, f'Failed to parse value of "{name}" ({text}) as a bool') from None


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).strip() or "error"


def _require_servers(api: AgentFacade) -> None:
    """A server answers; a client-only agent forwards to one of its servers."""
    if not api.is_server and not getattr(api, "is_client", False):
        raise ApiError(500, "no servers")
