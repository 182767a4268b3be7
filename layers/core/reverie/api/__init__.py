"""The HTTP API and MCP: routes, request and answer schemas, keys and the authorizer, the OpenAPI document,
and the MCP tools. Everything here answers a request; what it does is in the stages below."""
