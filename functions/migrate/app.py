"""Applies schema migrations: on deploy as a CloudFormation custom resource, or when invoked directly."""

from reverie.deploy import handle_custom_resource
from reverie.observability import logger
from reverie.runtime import clients
from reverie.store import Database


def _database() -> Database:
    # Not clients().db: that one refuses to start against an old schema, which is what we are here to fix.
    c = clients()
    return Database(c.database_url(), max_connections=1)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return handle_custom_resource(event, context, _database)
