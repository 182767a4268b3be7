"""Lambda authorizer (HTTP API, simple responses): maps `Authorization: Bearer <key>` to its project."""

from reverie.authorizer import authorize
from reverie.observability import logger
from reverie.runtime import clients


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return authorize(clients(), event)
