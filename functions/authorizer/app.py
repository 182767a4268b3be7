"""Lambda authorizer (HTTP API, simple responses): maps `Authorization: Bearer <key>` to its project."""

from reverie.api.authorizer import authorize
from reverie.platform.clients import clients
from reverie.platform.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return authorize(clients(), event)
