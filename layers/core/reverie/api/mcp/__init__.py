"""Reverie's memory as MCP tools: the tools defined once (`tools`), served statelessly over streamable HTTP
in-process for Lambda (`transport`)."""
