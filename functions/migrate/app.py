"""Applies schema migrations: on deploy as a CloudFormation custom resource, or when invoked directly."""

from reverie.platform.clients import clients
from reverie.platform.deploy import handle_custom_resource
from reverie.platform.observability import logger


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    # Not clients().db: that one refuses to start against an old schema, which is what this is here to fix.
    return handle_custom_resource(event, context, clients().migration_database)
