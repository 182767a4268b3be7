"""Row-level security, the second wall between projects (migration 0006), on the real Postgres and as the
functions connect: a login role that owns nothing, is no superuser and bypasses nothing, and sees a tenant
table's rows only in a transaction that names their project (or the operator's ALL_PROJECTS)."""

from __future__ import annotations

import secrets
import select
import socket
import threading
from datetime import UTC, datetime
from importlib import resources

import psycopg2
import psycopg2.errors
import pytest

from reverie.api.auth import issue_key
from reverie.domain.tiers import Tier
from reverie.store import ALL_PROJECTS, NO_PROJECT, Database, held_jobs, llm_usage, migrate
from reverie.store import memories as store
from reverie.store.projects import create_project
from reverie_dev.local.engines import APP_ROLE
from reverie_dev.local.sam_env import unix_socket_of

pytestmark = pytest.mark.integration

TENANT_TABLES = {"projects", "api_keys", "memories", "memory_words", "memory_events", "narratives", "processed_jobs",
                 "held_jobs", "llm_usage", "user_tombstones"}


def project_column(table: str) -> str:
    return "id" if table == "projects" else "project_id"


def seed(db: Database, project_id: str) -> None:
    """A row of the project in every tenant table, written as the functions write them."""
    create_project(db, project_id)
    issue_key(db, project_id)
    with db.transaction(project_id) as conn, conn.cursor() as cur:
        store.insert(cur, project_id, "ana", store.NewMemory(tier=Tier.SEMANTIC, text=f"Ana works at {project_id}"))
        cur.execute("INSERT INTO narratives (project_id, user_id, version, text) VALUES (%s, 'ana', 1, 'a story')",
                    (project_id,))
        cur.execute("INSERT INTO processed_jobs (job_id, tier, project_id, user_id, status) VALUES"
                    " ('j1', 'semantic', %s, 'ana', 'done')", (project_id,))
        held_jobs.hold(cur, project_id, "ana", Tier.EPISODIC,
                       [("j2", {"job_id": "j2", "created_at": datetime.now(UTC).isoformat()})])
        llm_usage.insert(cur, project_id, "ana", tier="semantic", job_ids=["j1"], purpose="extract", model="m",
                         prompt_tokens=1, completion_tokens=1)
        cur.execute("INSERT INTO user_tombstones (project_id, user_id) VALUES (%s, 'gone')", (project_id,))


def seen(db: Database, scope, project_id: str) -> dict[str, int]:
    """The project's rows in each tenant table, as a transaction in `scope` sees them."""
    with db.transaction(scope) as conn, conn.cursor() as cur:
        found = {}
        for table in sorted(TENANT_TABLES):
            # memory_words holds a row per word of the one memory: the memories it lists are counted.
            counted = "DISTINCT memory_id" if table == "memory_words" else "*"
            cur.execute(f"SELECT count({counted}) FROM {table} WHERE {project_column(table)} = %s", (project_id,))
            found[table] = cur.fetchone()[0]
        return found


@pytest.fixture
def two_projects(clients):
    a, b = "rls-a-" + secrets.token_hex(3), "rls-b-" + secrets.token_hex(3)
    seed(clients.db, a)
    seed(clients.db, b)
    return a, b


@pytest.fixture
def app_connection(engines):
    """A connection of the functions' role with nothing set on it."""
    conn = psycopg2.connect(engines.app_database_url)
    yield conn
    conn.close()


def test_the_functions_connect_as_a_role_that_owns_nothing_and_bypasses_nothing(clients, engines):
    with clients.db.read(NO_PROJECT) as cur:
        cur.execute(
            "SELECT current_user AS me, r.rolsuper, r.rolbypassrls, pg_has_role(current_user, 'reverie_runtime',"
            " 'MEMBER') AS runtime, (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            " AND pg_has_role(current_user, tableowner, 'MEMBER')) AS owned"
            " FROM pg_roles r WHERE r.rolname = current_user")
        role = cur.fetchone()
    assert role == {"me": APP_ROLE, "rolsuper": False, "rolbypassrls": False, "runtime": True, "owned": 0}
    # The owner migrates: the functions' URL is another role's.
    assert psycopg2.extensions.parse_dsn(engines.database_url)["user"] != APP_ROLE


def test_every_tenant_table_forces_the_project_policy_and_grants_the_runtime_role_its_rows_only(clients):
    with clients.db.read(NO_PROJECT) as cur:
        cur.execute("SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
                    " AND column_name = 'project_id'")
        with_project = {r["table_name"] for r in cur.fetchall()}
        cur.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, array_agg(p.polname) AS policies,"
            " bool_and(pg_get_expr(p.polqual, p.polrelid) = pg_get_expr(p.polwithcheck, p.polrelid)) AS same,"
            " min(pg_get_expr(p.polqual, p.polrelid)) AS qual"
            " FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid"
            " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' GROUP BY c.oid")
        tables = {r["relname"]: r for r in cur.fetchall()}
    # A table that gains a project_id column later must join the list (and migration 0006's).
    assert with_project | {"projects"} == TENANT_TABLES
    for name in TENANT_TABLES:
        table = tables[name]
        assert table["relrowsecurity"] and table["relforcerowsecurity"], name
        assert table["policies"] == ["project_scope"] and table["same"], name
        assert "current_setting('reverie.project_id'::text, true)" in table["qual"], name
        assert "current_setting('reverie.all_projects'::text, true)" in table["qual"], name
    assert set(tables) - TENANT_TABLES == {"schema_migrations"}
    with clients.db.read(NO_PROJECT) as cur:
        for name in [*TENANT_TABLES, "schema_migrations"]:
            cur.execute("SELECT privilege_type FROM information_schema.role_table_grants"
                        " WHERE grantee = 'reverie_runtime' AND table_name = %s", (name,))
            expected = {"SELECT"} if name == "schema_migrations" else {"SELECT", "INSERT", "UPDATE", "DELETE"}
            assert {r["privilege_type"] for r in cur.fetchall()} == expected, name


def test_without_a_project_the_functions_role_sees_no_row_of_any_tenant_table(clients, engines, two_projects,
                                                                              app_connection):
    a, _ = two_projects
    owner = Database(engines.database_url, max_connections=1)
    try:
        assert set(seen(owner, NO_PROJECT, a).values()) != {0}  # the rows are there (a superuser sees them)
    finally:
        owner.close()
    # A bare connection of the functions' role, nothing set: not a row, of any project.
    with app_connection.cursor() as cur:
        for table in sorted(TENANT_TABLES):
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone()[0] == 0, table
    app_connection.rollback()
    # Nor through the pool, in NO_PROJECT.
    assert set(seen(clients.db, NO_PROJECT, a).values()) == {0}
    # And nothing is written without a project.
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"), \
            clients.db.transaction(NO_PROJECT) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO user_tombstones (project_id, user_id) VALUES (%s, 'x')", (a,))


def test_a_projects_transaction_sees_its_rows_and_none_of_another_projects(clients, two_projects):
    a, b = two_projects
    assert set(seen(clients.db, a, a).values()) == {1}
    assert set(seen(clients.db, a, b).values()) == {0}  # even when the query names the other project
    assert set(seen(clients.db, b, b).values()) == {1}
    with clients.db.read(a) as cur:  # the single-statement reads too
        cur.execute("SELECT DISTINCT project_id FROM memories WHERE project_id IN (%s, %s)", (a, b))
        assert [r["project_id"] for r in cur.fetchall()] == [a]
    with clients.db.cursor(b) as cur:
        cur.execute("SELECT DISTINCT project_id FROM memory_events WHERE project_id IN (%s, %s)", (a, b))
        assert [r["project_id"] for r in cur.fetchall()] == [b]


def test_a_projects_transaction_cannot_write_another_projects_rows(clients, two_projects):
    a, b = two_projects
    for table, insert in [
        ("user_tombstones", "INSERT INTO user_tombstones (project_id, user_id) VALUES (%s, 'eve')"),
        ("memory_events", "INSERT INTO memory_events (project_id, user_id, memory_id, event)"
                          " VALUES (%s, 'eve', gen_random_uuid(), 'ADD')"),
        ("narratives", "INSERT INTO narratives (project_id, user_id, version, text) VALUES (%s, 'eve', 1, 'x')"),
    ]:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"), \
                clients.db.transaction(a) as conn, conn.cursor() as cur:
            cur.execute(insert, (b,))
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"), \
                clients.db.transaction(a) as conn, conn.cursor() as cur:  # nor move its own rows there
            cur.execute(f"UPDATE {table} SET project_id = %s WHERE project_id = %s", (b, a))
    with clients.db.transaction(a) as conn, conn.cursor() as cur:  # B's rows are not there to change
        cur.execute("UPDATE memories SET text = 'overwritten' WHERE project_id = %s", (b,))
        assert cur.rowcount == 0
        cur.execute("DELETE FROM api_keys WHERE project_id = %s", (b,))
        assert cur.rowcount == 0
    assert set(seen(clients.db, b, b).values()) == {1}


def test_the_operator_scope_sees_every_project(clients, two_projects):
    a, b = two_projects
    assert set(seen(clients.db, ALL_PROJECTS, a).values()) == {1}
    assert set(seen(clients.db, ALL_PROJECTS, b).values()) == {1}
    with clients.db.read(ALL_PROJECTS) as cur:
        cur.execute("SELECT count(DISTINCT project_id) AS n FROM memories WHERE project_id IN (%s, %s)", (a, b))
        assert cur.fetchone()["n"] == 2


def test_a_scope_ends_with_its_transaction_and_never_reaches_the_next_user_of_the_connection(engines, two_projects):
    a, _ = two_projects
    db = Database(engines.app_database_url, max_connections=1)  # one connection: every use below shares it
    try:
        for scope in (a, ALL_PROJECTS):
            with db.read(scope) as cur:
                cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s", (a,))
                assert cur.fetchone()["n"] == 1
            assert set(seen(db, NO_PROJECT, a).values()) == {0}
            assert seen(db, scope, a)["memories"] == 1
            with db.read(NO_PROJECT) as cur:
                cur.execute("SELECT count(*) AS n FROM memories WHERE project_id = %s", (a,))
                assert cur.fetchone()["n"] == 0
        with pytest.raises(RuntimeError), db.transaction(a) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            raise RuntimeError("rolled back")
        assert set(seen(db, NO_PROJECT, a).values()) == {0}
        with db.read(a) as cur:  # one scope never carries the other mode
            cur.execute("SELECT current_setting('reverie.all_projects', true) AS operator")
            assert cur.fetchone()["operator"] == "off"
    finally:
        db.close()


def test_a_statement_sent_with_its_scope_keeps_its_values_and_percent_signs_as_they_are(clients, project):
    from reverie.store import memory_search

    p, text = project.project_id, "Ana saves 50% of %s and %(pay)s, 100%% sure"
    with clients.db.transaction(p) as conn, conn.cursor() as cur:
        memory_id = store.insert(cur, p, "ana", store.NewMemory(tier=Tier.SEMANTIC, text=text))
    winners = memory_search.hybrid(clients.db, p, "ana", "saves", None, k=3, limit=1, vector_weight=0.5,
                                   neighbour_weight=0.5)
    assert [m.text for m in winners] == [text]  # %s parameters
    assert [h.id for h in memory_search.matching(clients.db, p, "ana", "saves", k=3)] == [memory_id]  # %(name)s
    with clients.db.read(p) as cur:  # no parameters: the statement goes as written
        cur.execute("SELECT count(*) AS n FROM memories WHERE text LIKE '%50\\%%'")
        assert cur.fetchone()["n"] == 1


def test_a_scope_is_a_project_or_one_of_the_two_named_modes(clients):
    for wrong in ("", None, 7):
        with pytest.raises(TypeError, match="a database scope"), clients.db.read(wrong):
            pass


def test_migration_0006_applies_again_unchanged_and_on_a_server_where_its_role_exists(engines):
    """A fresh database on this server (where reverie_runtime exists already, made for the tests' database) is
    migrated, then the migration's SQL is run twice more: the same policies, one per table, and the same wall."""
    name = "rls_" + secrets.token_hex(4)
    admin = psycopg2.connect(engines.database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    owner = Database(psycopg2.extensions.make_dsn(engines.database_url, dbname=name), max_connections=1)
    app = Database(psycopg2.extensions.make_dsn(engines.app_database_url, dbname=name), max_connections=1)
    try:
        migrate(owner)
        sql = resources.files("reverie.store").joinpath("migrations", "0006_row_level_security.sql").read_text()
        for _ in range(2):
            with owner.transaction(ALL_PROJECTS) as conn, conn.cursor() as cur:
                cur.execute(sql)
        with owner.read(NO_PROJECT) as cur:
            cur.execute("SELECT count(*) AS n, count(DISTINCT polrelid) AS tables FROM pg_policy")
            assert cur.fetchone() == {"n": len(TENANT_TABLES), "tables": len(TENANT_TABLES)}
        create_project(app, "p1")
        assert seen(app, "p1", "p1")["projects"] == 1
        assert set(seen(app, NO_PROJECT, "p1").values()) == {0}
    finally:
        owner.close()
        app.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# ---------------------------------------------------------------- round trips


class CountingDoor:
    """127.0.0.1:<port> forwarded to the Postgres socket, counting round trips: each time the client speaks after
    the server has answered (or first), one more."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.round_trips = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.socket(socket.AF_UNIX)
        upstream.connect(self.socket_path)
        last = None
        with client, upstream:
            while True:
                readable, _, _ = select.select([client, upstream], [], [])
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and last is not client:
                        self.round_trips += 1
                    last = sock
                    (upstream if sock is client else client).sendall(data)


def test_a_scoped_read_still_takes_one_round_trip(engines, two_projects):
    """The chat's hot reads (recall's searches and fetch, the narrative, the procedural rules) each send their
    scope with their statement: one round trip, as before row-level security. A transaction pays one more."""
    from reverie.store import memory_search, narratives

    a, _ = two_projects
    socket_path = unix_socket_of(engines.app_database_url)
    if socket_path is None:
        pytest.skip("counts round trips through the embedded Postgres's socket")
    door = CountingDoor(socket_path)
    parts = psycopg2.extensions.parse_dsn(engines.app_database_url)
    db = Database(psycopg2.extensions.make_dsn(engines.app_database_url, host="127.0.0.1", port=door.port,
                                               user=parts["user"]), max_connections=1)
    try:
        db.ping()  # the connection is open; count from here

        def trips(call) -> int:
            before = door.round_trips
            call()
            return door.round_trips - before

        vector = [1.0] + [0.0] * 383
        reads = {
            "nearest": lambda: memory_search.nearest(db, a, "ana", vector, k=5),
            "matching": lambda: memory_search.matching(db, a, "ana", "Ana works", k=5),
            "hybrid": lambda: memory_search.hybrid(db, a, "ana", "Ana works", vector, k=5, limit=5, vector_weight=0.5,
                                                  neighbour_weight=0.5),
            "narrative": lambda: narratives.latest(db, a, "ana"),
            "rules": lambda: store.current_by_tier(db, a, "ana", Tier.PROCEDURAL, 10),
        }
        assert {name: trips(read) for name, read in reads.items()} == dict.fromkeys(reads, 1)
        assert store.list_page(db, a, "ana")[0][0].text == f"Ana works at {a}"  # the scope let the row through

        def one_statement_transaction() -> None:
            with db.transaction(a) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")

        def one_statement_cursor() -> None:
            with db.cursor(a) as cur:
                cur.execute("SELECT 1")

        # BEGIN, set_config, the statement, COMMIT; the dict cursor sends its scope with its statement.
        assert trips(one_statement_transaction) == 4
        assert trips(one_statement_cursor) == 3
    finally:
        db.close()
