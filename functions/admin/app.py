"""Projects and API keys, for operators: invoked with lambda:InvokeFunction (IAM is its auth), no HTTP route."""

from reverie.ops.admin import handle
from reverie.platform.clients import clients
from reverie.platform.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return handle(clients(), event)
