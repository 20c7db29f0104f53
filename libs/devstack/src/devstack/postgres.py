"""A throwaway PostgreSQL cluster under `.devstack/pg`, plus the role/database bootstrap and migrations.

The bootstrap and the migrations also run against external servers (`ADMIN_DATABASE_URL`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg
from tenantschema import roles

from devstack import procs
from devstack.config import HOST, PG_BIN_ENV, PG_PORT_ENV, Config
from devstack.credentials import APP_ROLE, OWNER_ROLE, RELAY_ROLE, SUPERUSER, Credentials
from devstack.errors import DevstackError

log = logging.getLogger("devstack")

MIN_MAJOR = 15
PG_OS_USER = "postgres"
PLATFORM_DB = "platform"
SHARED_DB = "shared"
READY_TIMEOUT = 60.0
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_TOOLS = ("initdb", "pg_ctl", "postgres")

_INCLUDE = "include = 'devstack.conf'"
OWNER_ATTRS = "LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB CREATEROLE"
APP_ATTRS = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
SERVICE_ATTRS = f"LOGIN {roles.RUNTIME_ROLE_ATTRIBUTES}"


def service_url_keys(role: roles.ServiceRole) -> tuple[str, str]:
    """The stack.env keys of a service's own URLs: `<SERVICE>_PLATFORM_DATABASE_URL`, `..._SHARED_...`."""
    return (f"{role.env_prefix}PLATFORM_DATABASE_URL", f"{role.env_prefix}SHARED_DATABASE_URL")


SERVICE_DATABASE_KEYS: tuple[str, ...] = tuple(
    key for r in roles.SERVICE_ROLES for key in service_url_keys(r)
)
RELAY_ATTRS = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT"
RELAY_KEYS = ("RELAY_PLATFORM_DATABASE_URL", "RELAY_SHARED_DATABASE_URL")


# ---------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class PgUrl:
    """The parts of a plain `postgresql://user:password@host:port/db` URL."""

    user: str
    password: str | None
    host: str
    port: int
    database: str

    @classmethod
    def parse(cls, url: str, *, name: str = "URL") -> PgUrl:
        parts = urlsplit(url)
        if parts.scheme not in {"postgresql", "postgres"} and not parts.scheme.startswith("postgresql+"):
            raise DevstackError(f"{name} is not a postgresql:// URL")
        if not parts.hostname or not parts.username:
            raise DevstackError(f"{name} needs a user and a host (postgresql://user:password@host:port/db)")
        return cls(
            user=unquote(parts.username),
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname,
            port=parts.port or 5432,
            database=unquote(parts.path.lstrip("/")) or "postgres",
        )

    def render(self) -> str:
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return urlunsplit(
            ("postgresql", f"{auth}@{host}:{self.port}", "/" + quote(self.database, safe=""), "", "")
        )

    def with_database(self, database: str) -> PgUrl:
        return PgUrl(self.user, self.password, self.host, self.port, database)

    def with_user(self, user: str, password: str | None) -> PgUrl:
        return PgUrl(user, password, self.host, self.port, self.database)


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    try:
        parsed = PgUrl.parse(url)
    except DevstackError:
        return "<unparsable URL>"
    return parsed.with_user(parsed.user, None).render()


def database_urls(admin_url: str, credentials: Credentials, overrides: dict[str, str]) -> dict[str, str]:
    """ADMIN/OWNER/PLATFORM/SHARED URLs and each service's own pair: derived from the admin URL and our
    passwords, unless overridden (a service's URLs follow the server and database of an overridden
    PLATFORM/SHARED URL)."""
    admin = PgUrl.parse(admin_url, name="ADMIN_DATABASE_URL")
    owner = admin.with_user(OWNER_ROLE, credentials.password(OWNER_ROLE)).with_database(PLATFORM_DB)
    app = admin.with_user(APP_ROLE, credentials.password(APP_ROLE))
    urls = {
        "ADMIN_DATABASE_URL": admin_url,
        "OWNER_DATABASE_URL": owner.render(),
        "PLATFORM_DATABASE_URL": app.with_database(PLATFORM_DB).render(),
        "SHARED_DATABASE_URL": app.with_database(SHARED_DB).render(),
    }
    for key in urls:
        if overrides.get(key):
            urls[key] = overrides[key]
    platform = PgUrl.parse(urls["PLATFORM_DATABASE_URL"], name="PLATFORM_DATABASE_URL")
    shared = PgUrl.parse(urls["SHARED_DATABASE_URL"], name="SHARED_DATABASE_URL")
    for role in roles.SERVICE_ROLES:
        password = credentials.password(role.name)
        for key, base in zip(service_url_keys(role), (platform, shared), strict=True):
            urls[key] = overrides.get(key) or base.with_user(role.name, password).render()
    for key, value in urls.items():
        PgUrl.parse(value, name=key)
    return urls


def relay_urls(urls: dict[str, str], credentials: Credentials, overrides: dict[str, str]) -> dict[str, str]:
    """The outbox relay's URLs: the platform and shared databases, as its own role (unless overridden)."""
    relay_password = credentials.password(RELAY_ROLE)
    derived = {
        "RELAY_PLATFORM_DATABASE_URL": PgUrl.parse(urls["PLATFORM_DATABASE_URL"]).with_user(
            RELAY_ROLE, relay_password
        ),
        "RELAY_SHARED_DATABASE_URL": PgUrl.parse(urls["SHARED_DATABASE_URL"]).with_user(
            RELAY_ROLE, relay_password
        ),
    }
    return {key: overrides.get(key) or url.render() for key, url in derived.items()}


# ---------------------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class PgBinaries:
    bin_dir: Path
    major: int

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _has_tools(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in _TOOLS)


def _detect() -> PgBinaries | None:
    candidates: list[tuple[int, Path]] = []
    if _DEBIAN_PG_ROOT.is_dir():
        for child in _DEBIAN_PG_ROOT.iterdir():
            if child.name.isdigit() and _has_tools(child / "bin"):
                candidates.append((int(child.name), child / "bin"))
    if not candidates:
        return None
    major, bin_dir = max(candidates)
    return PgBinaries(bin_dir, major)


def _major_of(bin_dir: Path) -> int:
    result = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    match = re.search(r"(\d+)(?:\.\d+)?", result.stdout)
    if result.returncode != 0 or match is None:
        raise DevstackError(
            f"cannot run {bin_dir / 'postgres'} --version: {procs.last_meaningful_line(result.stderr)}"
        )
    return int(match.group(1))


def find_binaries(config: Config, *, install: bool = True) -> PgBinaries:
    """PG_BIN, else the newest /usr/lib/postgresql/<N>/bin; installs Debian's package as root if none."""
    if config.pg_bin is not None:
        if not _has_tools(config.pg_bin):
            raise DevstackError(f"{PG_BIN_ENV}={config.pg_bin} does not hold {', '.join(_TOOLS)}")
        found = PgBinaries(config.pg_bin, _major_of(config.pg_bin))
    else:
        detected = _detect()
        if detected is None and install and procs.is_root():
            log.info("PostgreSQL not found; installing Debian's postgresql package")
            procs.apt_install("postgresql")
            detected = _detect()
        if detected is None:
            raise DevstackError(
                "PostgreSQL server binaries not found in /usr/lib/postgresql/<N>/bin; "
                f"install them (apt-get install postgresql) or set {PG_BIN_ENV}"
            )
        found = detected
    if found.major < MIN_MAJOR:
        raise DevstackError(
            f"PostgreSQL {found.major} in {found.bin_dir} is too old; devstack needs {MIN_MAJOR} or newer"
        )
    return found


# ----------------------------------------------------------------------------------- local cluster


@dataclass(frozen=True)
class _OsUser:
    uid: int
    gid: int


class LocalPostgres:
    """The cluster in `<state>/pg/data`: initdb once, start/stop through pg_ctl, as `postgres` when root."""

    def __init__(self, config: Config, credentials: Credentials | None = None) -> None:
        self.config = config
        self.credentials = credentials
        self.data = config.pg_data
        self.pid_file = config.pg_data / "postmaster.pid"
        self._binaries: PgBinaries | None = None

    # --- who runs it
    def _os_user(self) -> _OsUser | None:
        if not procs.is_root():
            return None
        try:
            entry = pwd.getpwnam(PG_OS_USER)
        except KeyError:
            raise DevstackError(
                f"running as root, but there is no '{PG_OS_USER}' system user to run PostgreSQL as; "
                "install Debian's postgresql package or run devstack as a normal user"
            ) from None
        return _OsUser(entry.pw_uid, entry.pw_gid)

    def _run(self, args: list[str], *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        user = self._os_user()
        options: dict[str, Any] = {}
        if user is not None:
            # PostgreSQL refuses to run as root: run its tools as the unprivileged owner of the data.
            env["HOME"] = str(self.config.pg_dir)
            options = {"user": user.uid, "group": user.gid, "extra_groups": []}
        try:
            return subprocess.run(
                args,
                cwd=self.config.pg_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **options,
            )
        except subprocess.TimeoutExpired:
            raise DevstackError(
                f"`{' '.join(args[:2])}` did not finish within {timeout:.0f} s",
                procs.log_details(self.config.pg_log),
            ) from None

    @property
    def binaries(self) -> PgBinaries:
        if self._binaries is None:
            self._binaries = find_binaries(self.config)
        return self._binaries

    # --- state
    def running_pid(self) -> int | None:
        """The postmaster PID when our cluster runs (validated against /proc, so stale files don't count)."""
        try:
            lines = self.pid_file.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, IndexError, ValueError):
            return None
        if not procs.is_alive(pid):
            return None
        command = procs.cmdline(pid)
        if not command or not Path(command[0]).name.startswith("postgres"):
            return None
        if len(lines) > 1 and Path(lines[1]) != self.data:
            return None
        return pid

    def running_port(self) -> int | None:
        try:
            return int(self.pid_file.read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def is_initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    # --- lifecycle
    def prepare(self) -> None:
        """Find (or install) the binaries and make the folder usable, before anything is started."""
        self.binaries  # noqa: B018
        self._prepare_dir()

    def _prepare_dir(self) -> None:
        pg_dir = self.config.pg_dir
        pg_dir.mkdir(parents=True, exist_ok=True)
        user = self._os_user()
        if user is None:
            return
        for path in (pg_dir, *([self.data] if self.data.exists() else [])):
            os.chown(path, user.uid, user.gid)
        os.chmod(pg_dir, 0o700)

        def reachable() -> bool:
            probe = subprocess.run(
                ["test", "-w", str(pg_dir), "-a", "-x", str(pg_dir)],
                user=user.uid,
                group=user.gid,
                extra_groups=[],
                cwd="/",
                check=False,
            )
            return probe.returncode == 0

        if not reachable():
            # A checkout under a private folder (mktemp -d is 0700): as root, let the server's user
            # traverse the ancestors (execute only: it still cannot list or read them).
            for parent in pg_dir.parents:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    os.chmod(parent, mode | stat.S_IXOTH)
                    log.info("made %s traversable for the %s user", parent, PG_OS_USER)
        if not reachable():
            raise DevstackError(
                f"PostgreSQL runs as the '{PG_OS_USER}' user, which cannot reach {pg_dir}: "
                f"make its parent folders traversable (chmod o+x) or set DEVSTACK_DIR elsewhere"
            )

    def _initdb(self) -> None:
        if self.credentials is None:
            raise DevstackError("internal error: initdb needs the generated passwords")
        if self.data.exists():
            log.info("removing a half-initialised cluster in %s", self.data)
            shutil.rmtree(self.data)
        # initdb works in a side folder that becomes `data` only when complete, so an interrupted
        # initialisation is never mistaken for a cluster.
        partial = self.config.pg_dir / "data.partial"
        shutil.rmtree(partial, ignore_errors=True)
        pwfile = self.config.pg_dir / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.credentials.password(SUPERUSER) + "\n")
        user = self._os_user()
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        try:
            result = None
            for locale in ("C.UTF-8", "C"):
                result = self._run(
                    [
                        self.binaries.tool("initdb"),
                        "-D",
                        str(partial),
                        "-U",
                        SUPERUSER,
                        "--auth-host=scram-sha-256",
                        "--auth-local=trust",
                        f"--pwfile={pwfile}",
                        "-E",
                        "UTF8",
                        f"--locale={locale}",
                        "--no-sync",
                        "--no-instructions",
                    ]
                )
                if result.returncode == 0:
                    break
                shutil.rmtree(partial, ignore_errors=True)
            assert result is not None
            if result.returncode != 0:
                raise DevstackError(
                    f"initdb failed: {procs.last_meaningful_line(result.stderr or result.stdout)}"
                )
        finally:
            pwfile.unlink(missing_ok=True)
        self._ensure_include(partial)
        partial.rename(self.data)

    @staticmethod
    def _ensure_include(data: Path) -> None:
        conf = data / "postgresql.conf"
        if _INCLUDE not in conf.read_text():
            with conf.open("a") as handle:
                handle.write("\n# devstack: listen address, port and sockets, rewritten on every start\n")
                handle.write(_INCLUDE + "\n")

    def _write_conf(self) -> None:
        self._ensure_include(self.data)
        conf = self.data / "devstack.conf"
        conf.write_text(
            "# written by devstack on every start\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.config.pg_port}\n"
            "unix_socket_directories = ''\n"
            "max_connections = 300\n"
        )
        user = self._os_user()
        if user is not None:
            os.chown(conf, user.uid, user.gid)

    def preflight(self) -> None:
        if self.running_pid() is None:
            procs.require_free_port(self.config.pg_port, what="PostgreSQL", env_var=PG_PORT_ENV)

    def start(self) -> bool:
        """Start the cluster unless it runs (initialising it first if needed); True if this call did."""
        if self.running_pid() is not None:
            return False
        self._prepare_dir()
        if not self.is_initialised():
            log.info("initialising a PostgreSQL %d cluster in %s", self.binaries.major, self.data)
            self._initdb()
        # A PID file whose process is gone (or is someone else) would block the start.
        self.pid_file.unlink(missing_ok=True)
        self._write_conf()
        log.info("starting PostgreSQL on %s:%d", HOST, self.config.pg_port)
        result = self._run(
            [
                self.binaries.tool("pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.config.pg_log),
                "-w",
                "-t",
                str(int(READY_TIMEOUT)),
                "-s",
            ],
            timeout=READY_TIMEOUT + 15,
        )
        if result.returncode != 0:
            raise DevstackError(
                f"PostgreSQL did not start: {procs.last_meaningful_line(result.stderr or result.stdout)}",
                procs.log_details(self.config.pg_log),
            )
        return True

    def stop(self) -> bool:
        """Stop the cluster if it runs (fast shutdown); True when it was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        log.info("stopping PostgreSQL (pid %d)", pid)
        try:
            bin_dir = self._binaries or find_binaries(self.config, install=False)
            self._run(
                [bin_dir.tool("pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "-s"],
                timeout=75,
            )
        except DevstackError as exc:
            log.warning("pg_ctl stop failed (%s); signalling the postmaster", exc)
        # SIGINT is PostgreSQL's "fast shutdown"; SIGKILL only if it hangs.
        procs.terminate(pid, name="PostgreSQL", timeout=30, sig=signal.SIGINT)
        return True


# ---------------------------------------------------------------------------------- readiness + SQL


@contextlib.asynccontextmanager
async def _connect(url: str, within: float = 10.0) -> Any:
    conn = await asyncpg.connect(url, timeout=within)
    try:
        yield conn
    finally:
        await conn.close()


async def wait_ready(
    admin_url: str, *, within: float = READY_TIMEOUT, pid: int | None = None, log_file: Path | None = None
) -> str:
    """Wait until the superuser can log in; returns the server version."""
    deadline = time.monotonic() + within
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if pid is not None and not procs.is_alive(pid):
            raise DevstackError(
                "PostgreSQL exited during start-up", procs.log_details(*(p for p in [log_file] if p))
            )
        try:
            async with _connect(admin_url, within=5) as conn:
                version: str = await conn.fetchval("SHOW server_version")
                return version
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
                raise DevstackError(
                    f"PostgreSQL rejects the superuser login of {redact(admin_url)}: {exc}"
                ) from None
        await asyncio.sleep(0.2)
    raise DevstackError(
        f"PostgreSQL at {redact(admin_url)} was not ready within {within:.0f} s ({last_error})",
        procs.log_details(*(p for p in [log_file] if p)),
    )


async def _quote_ident(conn: Any, name: str) -> str:
    quoted: str = await conn.fetchval("SELECT quote_ident($1)", name)
    return quoted


async def _ensure_role(conn: Any, role: str, password: str | None, attrs: str) -> None:
    ident = await _quote_ident(conn, role)
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    if password is not None:
        literal: str = await conn.fetchval("SELECT quote_literal($1)", password)
        await conn.execute(f"{verb} ROLE {ident} WITH {attrs} PASSWORD {literal}")
    else:
        await conn.execute(f"{verb} ROLE {ident} WITH {attrs}")
    if not exists:
        log.info("created role %s", role)


async def _ensure_database(conn: Any, database: str, owner: str, app_roles: list[str]) -> None:
    db = await _quote_ident(conn, database)
    owner_ident = await _quote_ident(conn, owner)
    current = await conn.fetchval(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
    )
    if current is None:
        await conn.execute(f"CREATE DATABASE {db} OWNER {owner_ident} ENCODING 'UTF8' TEMPLATE template0")
        log.info("created database %s", database)
    elif current != owner:
        await conn.execute(f"ALTER DATABASE {db} OWNER TO {owner_ident}")
    await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
    for role in app_roles:
        await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {await _quote_ident(conn, role)}")


async def _prepare_schema(url: str, owner: str, app_roles: list[str]) -> None:
    async with _connect(url) as conn:
        schema_owner = await conn.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'"
        )
        if schema_owner not in {owner, "pg_database_owner"}:
            await conn.execute(f"ALTER SCHEMA public OWNER TO {await _quote_ident(conn, owner)}")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for role in app_roles:
            await conn.execute(f"GRANT USAGE ON SCHEMA public TO {await _quote_ident(conn, role)}")


async def _ensure_service_roles(conn: Any, urls: dict[str, str]) -> None:
    """Each service's login role (tenantschema.roles), with the password of its URLs, in app_user,
    with its timeouts. Set here as the superuser, before the migrations grant them their rights (which
    redo membership and timeouts where the owner may: PostgreSQL 15; 16+ needs ADMIN OPTION)."""
    for role in roles.SERVICE_ROLES:
        urls_of_role = [PgUrl.parse(urls[key], name=key) for key in service_url_keys(role) if key in urls]
        if any(url.user != role.name for url in urls_of_role):
            raise DevstackError(
                f"{' / '.join(service_url_keys(role))} must log in as {role.name} "
                "(tenantschema.roles); other role names are not supported"
            )
        password = next((url.password for url in urls_of_role if url.password is not None), None)
        await _ensure_role(conn, role.name, password, SERVICE_ATTRS)
    for statement in roles.superuser_role_ddl():
        await conn.execute(statement)


async def bootstrap(urls: dict[str, str]) -> str:
    """Create the roles and databases (idempotent) as the superuser; returns the server version."""
    admin = PgUrl.parse(urls["ADMIN_DATABASE_URL"], name="ADMIN_DATABASE_URL")
    owner = PgUrl.parse(urls["OWNER_DATABASE_URL"], name="OWNER_DATABASE_URL")
    apps = [PgUrl.parse(urls[key], name=key) for key in ("PLATFORM_DATABASE_URL", "SHARED_DATABASE_URL")]
    app_roles = sorted({app.user for app in apps})
    async with _connect(admin.render()) as conn:
        version: str = await conn.fetchval("SHOW server_version")
        version_num = int(await conn.fetchval("SHOW server_version_num"))
        if version_num < MIN_MAJOR * 10000:
            log.warning(
                "PostgreSQL %s is older than %d; the platform expects %d+", version, MIN_MAJOR, MIN_MAJOR
            )
        await _ensure_role(conn, owner.user, owner.password, OWNER_ATTRS)
        if version_num >= 150000:
            # The migrator's DDL on live tables lowers its own deadlock_timeout, so that PostgreSQL
            # cancels a blocking autovacuum before the table's writers have queued long behind it
            # (services/migrator/README.md, "Capture").
            await conn.execute(
                f"GRANT SET ON PARAMETER deadlock_timeout TO {await _quote_ident(conn, owner.user)}"
            )
        for app in apps:
            if app.user != owner.user:
                await _ensure_role(conn, app.user, app.password, APP_ATTRS)
        await _ensure_service_roles(conn, urls)
        for database in dict.fromkeys(app.database for app in apps):
            await _ensure_database(conn, database, owner.user, app_roles)
    for database in dict.fromkeys(app.database for app in apps):
        await _prepare_schema(admin.with_database(database).render(), owner.user, app_roles)
    return version


async def bootstrap_relay(urls: dict[str, str]) -> None:
    """The relay's login role, allowed to connect to the platform and shared databases; what it may
    execute there is granted by the migrations (tenantschema.outbox_ddl), and on dedicated databases by
    their history too. Bounded statements: a claim or settle never takes long."""
    admin = PgUrl.parse(urls["ADMIN_DATABASE_URL"], name="ADMIN_DATABASE_URL")
    relays = [PgUrl.parse(urls[key], name=key) for key in RELAY_KEYS]
    async with _connect(admin.render()) as conn:
        for relay in {r.user: r for r in relays}.values():
            await _ensure_role(conn, relay.user, relay.password, RELAY_ATTRS)
            ident = await _quote_ident(conn, relay.user)
            await conn.execute(f"ALTER ROLE {ident} SET statement_timeout = '30s'")
            await conn.execute(f"ALTER ROLE {ident} SET idle_in_transaction_session_timeout = '60s'")
            # The relay only writes bookkeeping (leases, settled states): a settle lost in a crash means
            # the events are sent again (at least once), so its commits need not wait for the disk.
            await conn.execute(f"ALTER ROLE {ident} SET synchronous_commit = off")
        for relay in relays:
            database = await _quote_ident(conn, relay.database)
            await conn.execute(
                f"GRANT CONNECT ON DATABASE {database} TO {await _quote_ident(conn, relay.user)}"
            )


def _schema_fingerprint() -> str | None:
    """A digest of the tenantschema package's files (names, sizes, mtimes), found without importing it."""
    spec = importlib.util.find_spec("tenantschema")
    if spec is None or not spec.submodule_search_locations:
        return None
    digest = hashlib.sha256()
    for location in spec.submodule_search_locations:
        root = Path(location)
        for path in sorted(root.rglob("*")):
            if path.suffix in {".py", ".mako", ".sql", ".ini"} and "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


async def _alembic_versions(urls: list[str]) -> list[list[str]] | None:
    versions: list[list[str]] = []
    try:
        for url in urls:
            async with _connect(url) as conn:
                rows = await conn.fetch("SELECT version_num FROM alembic_version ORDER BY 1")
                versions.append([str(row[0]) for row in rows])
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return versions


def _migration_state(fingerprint: str | None, owner_urls: list[str]) -> str | None:
    if fingerprint is None:
        return None
    versions = asyncio.run(_alembic_versions(owner_urls))
    if versions is None:
        return None
    where = [redact(url) for url in owner_urls]
    return json.dumps(
        {"schema": fingerprint, "databases": dict(zip(where, versions, strict=True))}, sort_keys=True
    )


def migrate(urls: dict[str, str], state_file: Path | None = None) -> bool:
    """Run the platform and shared Alembic histories to head as the owner role (blocking).

    Alembic and SQLAlchemy take seconds to import, so when `state_file` records that these databases
    were migrated by the current tenantschema files and are still at the revisions recorded then,
    nothing runs. Returns False (after a warning) when `tenantschema.migrations` is not available yet.
    """
    owner = PgUrl.parse(urls["OWNER_DATABASE_URL"], name="OWNER_DATABASE_URL")
    apps = {
        "platform": PgUrl.parse(urls["PLATFORM_DATABASE_URL"]),
        "shared": PgUrl.parse(urls["SHARED_DATABASE_URL"]),
    }
    owner_urls = [owner.with_database(app.database).render() for app in apps.values()]
    fingerprint = _schema_fingerprint()
    if state_file is not None and fingerprint is not None:
        with contextlib.suppress(OSError):
            if state_file.read_text() == _migration_state(fingerprint, owner_urls):
                log.info("databases already at head (tenantschema unchanged since the last migration)")
                return True
    try:
        from tenantschema.migrations import History, upgrade
    except ImportError as exc:
        log.warning("skipping migrations: tenantschema.migrations is not importable (%s)", exc)
        return False
    targets: tuple[tuple[History, PgUrl], ...] = (("platform", apps["platform"]), ("shared", apps["shared"]))
    for history, app in targets:
        url = owner.with_database(app.database).render()
        started = time.monotonic()
        try:
            upgrade(url, history, "head", app_role=app.user)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            raise DevstackError(
                f"migrating database {app.database} (history {history}) to head failed: "
                f"{type(exc).__name__}: {first_line}"
            ) from exc
        log.info(
            "database %s at head (%s history, %.1f s)", app.database, history, time.monotonic() - started
        )
    if state_file is not None:
        state = _migration_state(fingerprint, owner_urls)
        if state is not None:
            state_file.write_text(state)
    return True
