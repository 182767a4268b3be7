"""The env-vars file for `sam local invoke`: only what the template declares, Postgres over TCP, no LLM key."""

from __future__ import annotations

from reverie_dev.local.sam_env import declared_variables, over_tcp, sam_env, unix_socket_of
from reverie_dev.local.template import Template

T = Template()
SOCKET_URL = "postgresql://postgres:@/postgres?host=/tmp/reverie/pg"


def test_the_template_declares_what_a_function_in_docker_needs():
    # SAM sets only declared variables: these must be declared for the env-vars file to reach a function
    assert {"DATABASE_URL", "REDIS_URL", "AWS_ENDPOINT_URL", "REFLECTION_TOPIC_ARN", "EPISODIC_QUEUE_URL",
            "LLM_API_KEY_SECRET_ARN", "STAGE"} <= declared_variables(T)


def test_a_unix_socket_url_is_found_and_rewritten_for_tcp():
    assert unix_socket_of(SOCKET_URL) == "/tmp/reverie/pg/.s.PGSQL.5432"
    assert unix_socket_of("postgresql://u@/db?host=/run/pg&port=5433") == "/run/pg/.s.PGSQL.5433"
    assert unix_socket_of("postgresql://u:p@db.example.com:5432/db") is None
    assert over_tcp(SOCKET_URL, "127.0.0.1", 6543) == "postgresql://postgres@127.0.0.1:6543/postgres"
    assert over_tcp("postgresql://u:p@/db?host=/x&sslmode=disable", "127.0.0.1", 1) == \
        "postgresql://u:p@127.0.0.1:1/db?sslmode=disable"


def test_the_file_holds_only_declared_variables_and_the_tcp_database():
    env = {"DATABASE_URL": SOCKET_URL, "REDIS_URL": "redis://127.0.0.1:1", "AWS_ENDPOINT_URL": "http://127.0.0.1:2",
           "AWS_ACCESS_KEY_ID": "testing", "POWERTOOLS_TRACE_DISABLED": "true", "LLM_BASE_URL": ""}
    values = sam_env(env, T, "postgresql://postgres@127.0.0.1:3/postgres")["Parameters"]
    assert values["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:3/postgres"
    assert values["AWS_ENDPOINT_URL"] == "http://127.0.0.1:2"
    assert "AWS_ACCESS_KEY_ID" not in values and "POWERTOOLS_TRACE_DISABLED" not in values


def test_an_llm_key_is_never_written_and_its_endpoint_falls_back_to_the_offline_model():
    env = {"LLM_BASE_URL": "https://api.example.com/v1", "LLM_API_KEY": "sk-secret"}
    values = sam_env(env, T)["Parameters"]
    assert "sk-secret" not in str(values) and values["LLM_BASE_URL"] == ""
    assert sam_env({"LLM_BASE_URL": "http://127.0.0.1:11434/v1"}, T)["Parameters"]["LLM_BASE_URL"] == \
        "http://127.0.0.1:11434/v1"  # a keyless local endpoint is kept
