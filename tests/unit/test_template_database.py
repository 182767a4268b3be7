"""template.yaml gives every function the database and the right to read its credentials, and gives the deploy
custom resource a timeout of its own."""

import pytest

from reverie_dev.local.template import Template

T = Template()
FUNCTIONS = T.of_type("AWS::Serverless::Function")
DB_SECRET_POLICY = {"Fn::If": ["HasDatabaseSecret",
                               {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "DatabaseSecretArn"}}},
                               {"Ref": "AWS::NoValue"}]}


def test_the_database_is_a_host_port_and_name_with_credentials_from_a_secret_or_a_url():
    parameters = T.doc["Parameters"]
    assert parameters["DatabasePort"]["Default"] == 5432
    assert parameters["DatabaseName"]["Default"] == "postgres"
    assert {"DatabaseHost", "DatabaseSecretArn", "DatabaseUrl"} <= set(parameters)
    variables = T.globals["Environment"]["Variables"]
    for variable, parameter in [("DATABASE_HOST", "DatabaseHost"), ("DATABASE_PORT", "DatabasePort"),
                                ("DATABASE_NAME", "DatabaseName"), ("DATABASE_SECRET_ARN", "DatabaseSecretArn"),
                                ("DATABASE_URL", "DatabaseUrl")]:
        assert variables[variable] == {"Ref": parameter}
    # A secret without a host is refused at deploy time, not at the first request.
    assert "DatabaseSecretHasAHost" in T.doc["Rules"]


@pytest.mark.parametrize("logical_id", sorted(set(FUNCTIONS) - {"MigrateFunction"}))
def test_every_function_may_read_the_database_secret(logical_id):
    # Every function reaches Postgres (the authorizer looks keys up; the migrate function migrates, below).
    assert DB_SECRET_POLICY in FUNCTIONS[logical_id]["Properties"].get("Policies", []), logical_id


def test_the_migrate_function_reads_the_owners_secret_when_given_else_the_functions_secret():
    """Migrations run as the schema's owner; every other function as a login role that row-level security binds,
    and none of them may read the owner's secret."""
    assert T.doc["Parameters"]["DatabaseOwnerSecretArn"]["Default"] == ""
    migrate = FUNCTIONS["MigrateFunction"]["Properties"]
    assert migrate["Environment"]["Variables"]["DATABASE_OWNER_SECRET_ARN"] == {"Ref": "DatabaseOwnerSecretArn"}
    owner_or_functions = {"Fn::If": ["HasDatabaseOwnerSecret", {"Ref": "DatabaseOwnerSecretArn"},
                                     {"Ref": "DatabaseSecretArn"}]}
    assert migrate["Policies"] == [{"Fn::If": [
        "HasDatabaseSecret", {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": owner_or_functions}},
        {"Ref": "AWS::NoValue"}]}]
    for logical_id, function in FUNCTIONS.items():
        if logical_id != "MigrateFunction":
            assert "DatabaseOwnerSecretArn" not in str(function["Properties"]), logical_id
    assert "DATABASE_OWNER_SECRET_ARN" not in T.globals["Environment"]["Variables"]
    # An owner's secret without the functions' (and their host) is refused at deploy time.
    assert "DatabaseOwnerSecretGoesWithTheSecret" in T.doc["Rules"]


def test_the_migrate_resource_gives_up_a_little_after_its_function_and_long_before_an_hour():
    resource = T.resources["MigrateOnDeploy"]["Properties"]
    timeout = FUNCTIONS["MigrateFunction"]["Properties"]["Timeout"]
    assert timeout < resource["ServiceTimeout"] <= timeout + 60
