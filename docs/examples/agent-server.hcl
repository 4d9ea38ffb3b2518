# A shoal server, written as a Nomad agent file (HCL2; see docs/config.md).
#
#   shoal agent -config docs/examples/agent-server.hcl
#
# Flags given on the command line win over this file, e.g. -node s2 -http-port 5646.

region     = "europe"
datacenter = "dc-west"
name       = "server-1"
bind_addr  = "127.0.0.1"
log_level  = "INFO"

# Leave the cluster gracefully on Ctrl-C and on SIGTERM.
leave_on_interrupt = true
leave_on_terminate = true

ports {
  http = 4646
  rpc  = 4647
  serf = 4648
}

# With several agents on one host give each its own IP or ports. The advertise
# address defaults to the bind address; rpc and serf must advertise the same IP.
# advertise {
#   rpc  = "127.0.0.1"
#   serf = "127.0.0.1"
# }

server {
  enabled            = true
  bootstrap_expect   = 1
  raft_protocol      = 3
  num_schedulers     = 2
  enabled_schedulers = ["service", "batch", "system", "sysbatch"]
  retry_interval     = "15s"
}

# Added to every HTTP API response. HCL2 wants an identifier or `= { "X" = "y" }`.
http_api_response_headers {
  Access-Control-Allow-Origin = "*"
}
