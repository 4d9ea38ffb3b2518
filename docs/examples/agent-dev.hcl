# Extra settings on top of -dev (one node, server and client, in memory):
#
#   shoal agent -dev -config docs/examples/agent-dev.hcl
#
# -dev already turns enable_debug on; this file adds ACLs and JSON logs.

log_json = true

acl {
  enabled   = true
  token_ttl = "30s"
}

http_api_response_headers = {
  "X-Shoal-Env" = "dev"
}
