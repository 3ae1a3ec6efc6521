"""One typed settings object for every process, read from TASKMESH_* environment variables.

The defaults run the whole mesh on a developer machine (local PostgreSQL, RabbitMQ guest/guest,
Redis). Outside development (TASKMESH_ENVIRONMENT != "development") the processes refuse to
start with the development JWT secret or admin password.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskmesh.egress import parse_rules
from taskmesh.secrets.box import DEV_SECRET_KEYS, SecretBox

DEV_JWT_SECRET = "taskmesh-development-secret-change-me-0123456789"
DEV_ADMIN_PASSWORD = "admin"
DEV_WORKER_PASSWORD = "worker-dev-password"


# --- input (issue 8, finding 4): which processes hold which secrets ---
# Settings only the api_server, the scheduler and taskmesh-migrate read. Workers and the
# gateway are deployed without them (deploy/, taskmesh-up), so that nothing a job can reach
# through a worker holds the database, the token signing key or the admin's password.
SERVER_ONLY_SETTINGS = (
    "database_url",
    "redis_url",
    "jwt_secret",
    "admin_username",
    "admin_password",
    "metrics_token",  # read by the api_server only (issue 8, finding 15)
    "secret_keys",  # secrets: the api_server seals, the scheduler opens for a claimed attempt
)
# What a worker needs besides non-secret settings: the broker and its own account.
WORKER_SECRETS = ("amqp_url", "worker_username", "worker_password")


def env_variable(setting: str) -> str:
    """The environment variable of a Settings field."""
    return f"TASKMESH_{setting.upper()}"


class InsecureSettingsError(RuntimeError):
    """Raised at start-up when production runs with development secrets."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKMESH_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    # Prefix of every queue, exchange and Redis key: lets several meshes (or test sessions)
    # share one RabbitMQ and Redis. NOTIFY channels (taskmesh_*) belong to the database, which
    # each mesh has to itself (its triggers are part of the schema), so they carry no prefix.
    namespace: str = Field(default="taskmesh", pattern=r"^[a-z][a-z0-9_]{0,39}$")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/taskmesh"
    # Connections per api_server / scheduler pool: at most database_pool_size, of which
    # database_pool_min_size stay open while idle (README "Database connections").
    database_pool_size: int = Field(default=10, ge=1)
    database_pool_min_size: int = Field(default=2, ge=0)
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    # AMQP heartbeat: a hung worker's connection (and the work units it holds) is given back to
    # the queue after about two of these.
    amqp_heartbeat_seconds: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Seconds a cached job status lives without being refreshed (a backstop only:
    # every run transition writes the cache through).
    status_cache_ttl: int = 600

    jwt_secret: str = DEV_JWT_SECRET
    jwt_ttl_seconds: int = 3600
    admin_username: str = "admin"
    admin_password: str = DEV_ADMIN_PASSWORD
    # The account workers log in with; created at first start like the admin.
    worker_username: str = "worker"
    worker_password: str = DEV_WORKER_PASSWORD

    api_listen: str = "127.0.0.1:50051"
    scheduler_listen: str = "127.0.0.1:50052"
    # Where workers log in (AuthService) and connect (WorkerService).
    api_address: str = "127.0.0.1:50051"
    scheduler_address: str = "127.0.0.1:50052"

    gateway_port: int = 8080
    gateway_admin_port: int = 9901

    worker_id: str = ""
    worker_slots: int = 32
    # Unacknowledged work units a worker holds beyond its slots, to hide queue latency.
    worker_prefetch_extra: int = 16
    worker_shell_enabled: bool = False
    # Seconds a claimed attempt stays leased without a heartbeat (workers beat every third).
    lease_seconds: float = 30.0
    # After TERM, seconds a timed-out or cancelled shell process gets before KILL.
    worker_kill_grace_seconds: float = 5.0
    # Seconds past an attempt's timeout before the scheduler fails it itself (the worker's own
    # timeout normally fires first).
    timeout_grace_seconds: float = 15.0

    # Identifies a scheduler in metrics and logs; hostname-pid when empty.
    scheduler_id: str = ""
    # Due jobs one firing transaction claims.
    schedule_batch_size: int = Field(default=100, ge=1, le=10_000)
    # The longest a firing loop sleeps: it wakes at the earliest due slot, and on NOTIFY (a job
    # becomes due earlier, is resumed, or LISTEN reconnects). Only a safety net, so that an idle
    # scheduler does not query every second: a notification lost on a silently broken LISTEN
    # connection delays a newly due job by at most this much.
    schedule_poll_interval: float = Field(default=30.0, gt=0)
    # A slot fired more than this many seconds late counts as missed (no scheduler ran at its
    # time): the job's misfire policy then decides about it and the slots due with it.
    schedule_misfire_threshold: float = Field(default=5.0, gt=0)

    relay_batch_size: int = 500
    # Seconds between outbox polls when no NOTIFY arrives (NOTIFY only speeds things up).
    relay_poll_interval: float = 1.0

    # Flow control (README "Flow control"): priorities, concurrency and rate limits.
    # The relay publishes (highest priority first) only while fewer than this many work units
    # are out in RabbitMQ unclaimed, so that a new high-priority run passes a low-priority
    # backlog; 0 publishes everything at once (RabbitMQ's FIFO then decides the order).
    dispatch_max_in_flight: int = Field(default=512, ge=0)
    # While the bound is reached, the relay looks again this often (seconds).
    dispatch_recheck_interval: float = Field(default=0.05, gt=0)
    # Admission passes: runs admitted per statement, and how often a pass runs without NOTIFY
    # (and while a rate-limited run waits for its token).
    admission_batch_size: int = Field(default=1000, ge=1, le=10_000)
    admission_poll_interval: float = Field(default=1.0, gt=0)
    admission_rate_poll_interval: float = Field(default=0.05, gt=0)

    # Observability (host:port; an empty string disables). Prometheus metrics of each process
    # at /metrics; the api_server's listener also serves the /actuator/* endpoints the gateway
    # routes to it. Workers answer the gRPC health service on worker_health_listen.
    api_metrics_listen: str = "127.0.0.1:9101"
    scheduler_metrics_listen: str = "127.0.0.1:9102"
    worker_metrics_listen: str = "127.0.0.1:9103"
    worker_health_listen: str = "127.0.0.1:50053"
    # Seconds between dependency checks (PostgreSQL, RabbitMQ) behind each process's health.
    health_check_interval: float = Field(default=2.0, gt=0)
    # After SIGTERM, seconds a worker gets to finish the attempts it executes; attempts still
    # running then are stopped and reported as lost (retried elsewhere as the policy allows).
    worker_shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # Egress (the http executor's policy, taskmesh/egress.py). Always denied, whatever these
    # say: link-local, unspecified, multicast/broadcast and every port the mesh listens on.
    # Loopback and private ranges: None means allowed in development, denied in production.
    egress_allow_loopback: bool | None = None
    egress_allow_private: bool | None = None
    # Comma-separated CIDRs or addresses, each optionally with :port ([v6]:port; ":25" is a
    # port on every address). The allow list opens loopback/private targets; deny wins over it.
    egress_allow: str = ""
    egress_deny: str = ""
    # Actuator (api_server/actuator.py): /actuator/prometheus needs a bearer token (an admin or
    # operator access token, or metrics_token) unless public; None means public in
    # development only. /actuator/health* stays open for probes.
    actuator_prometheus_public: bool | None = None
    metrics_token: str = ""
    # Envoy's full admin interface listens only on this Unix socket (default:
    # $TMPDIR/taskmesh-gateway-<gateway_port>-admin.sock); gateway_admin_port serves only
    # GET /ready and /stats/prometheus.
    gateway_admin_socket: str = ""

    # --- auth: token revocation, login throttling, password hashing (issue 8, findings 3, 9, 10) ---
    # Seconds between each server's checks of the users table: a deleted user's tokens, or those
    # issued before a role or password change, stop working within about this.
    credential_refresh_interval: float = Field(default=1.0, gt=0, le=2.5)
    # Tokens are refused (UNAVAILABLE) once the users table could not be read for this long.
    credential_max_staleness: float = Field(default=5.0, gt=0)
    # Failed logins allowed per username / per client address within login_window_seconds;
    # beyond them each further attempt must wait login_base_delay_seconds, doubling up to
    # login_max_delay_seconds (and is answered RESOURCE_EXHAUSTED, HTTP 429, until then).
    login_user_failures: int = Field(default=10, ge=1)
    login_address_failures: int = Field(default=50, ge=1)
    login_window_seconds: float = Field(default=900.0, gt=0)
    login_base_delay_seconds: float = Field(default=1.0, gt=0)
    login_max_delay_seconds: float = Field(default=300.0, gt=0)
    # Comma-separated CIDRs of the proxies (the gateway) whose X-Forwarded-For names the client;
    # any other peer is the client itself. The default trusts loopback and private networks,
    # where the gateway runs (compose, Kubernetes): otherwise every client behind it would share
    # the gateway's address, and 50 failures from anyone would hold up everyone's logins. Narrow
    # it to the gateway's addresses where other hosts on those networks can reach the api_server.
    login_trusted_proxies: str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    # Threads hashing passwords (argon2 takes tens of ms of CPU each), and logins that may wait
    # for them; a login beyond both is answered RESOURCE_EXHAUSTED (429) at once.
    password_hash_threads: int = Field(default=2, ge=1)
    password_hash_queue: int = Field(default=32, ge=0)
    # argon2id cost of new password hashes: argon2-cffi's defaults; lower only in development
    # (the test suite lowers them: tests/support.Isolation), production refuses less.
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=64)

    # --- notifications (issue 13): the schedulers' event scan and webhook deliveries ---
    # Seconds between scans for new events (finished runs, skipped slots) on each scheduler.
    notification_scan_interval: float = Field(default=1.0, gt=0)
    # A scan reads rows stamped at least this long ago (statements commit well within it).
    notification_scan_settle_seconds: float = Field(default=2.0, ge=0.1)
    notification_scan_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Seconds between scans for stuck runs (QUEUED longer than a rule's stuck_after).
    notification_stuck_scan_interval: float = Field(default=15.0, gt=0)
    # Deliveries one loop posts at once, and how long it holds them (a timed-out post included).
    notification_delivery_batch_size: int = Field(default=20, ge=1, le=1000)
    notification_delivery_poll_interval: float = Field(default=1.0, gt=0)
    notification_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Retries: initial * 2^(n-1) seconds (half of it jittered), capped, up to max attempts.
    notification_retry_initial_seconds: float = Field(default=5.0, gt=0)
    notification_retry_max_seconds: float = Field(default=3600.0, gt=0)
    notification_max_attempts: int = Field(default=12, ge=1, le=100)
    # --- TLS (issue 14, item 7): the gateway's HTTPS listener and the mesh's own gRPC links ---
    # Plain HTTP and plaintext gRPC when unset (the development default). Files are PEM.
    # The gateway serves HTTPS (HTTP/1.1, HTTP/2 and native gRPC over TLS, on its one port) when
    # both are set (gateway/tls.py).
    gateway_tls_cert_file: str = ""
    gateway_tls_key_file: str = ""
    # TLS inside the mesh (taskmesh/tls.py): every gRPC listener (api_server, scheduler, a
    # worker's health listener) serves TLS with tls_cert_file/tls_key_file, and every client in
    # the mesh (workers, the gateway, the api_server's scheduler check, taskmesh-healthcheck)
    # verifies servers, host name included, against tls_ca_file.
    tls_enabled: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    # mTLS: servers also require a client certificate signed by tls_ca_file, and every client
    # presents its own tls_cert_file/tls_key_file.
    tls_client_auth: bool = False
    # --- Retention (issue 14): how long finished history is kept; 0 keeps it forever. ---
    # Counted from a run's finish time; a job's Retention overrides each per job. Every
    # scheduler purges in batches (taskmesh.db.run_purge); each job's latest run always stays.
    retention_succeeded_days: float = Field(default=7.0, ge=0)
    retention_failed_days: float = Field(default=30.0, ge=0)
    retention_cancelled_days: float = Field(default=30.0, ge=0)
    # Log lines of finished runs, counted from each line's time.
    retention_logs_days: float = Field(default=7.0, ge=0)
    # Slots skipped by a schedule (ListSkippedSlots), counted from when they were recorded.
    retention_skipped_slots_days: float = Field(default=30.0, ge=0)
    # Rows a purge statement deletes at most (one short transaction each), the pause between
    # two statements, and the wait between two sweeps once one found nothing left to purge.
    retention_batch_size: int = Field(default=500, ge=1, le=10_000)
    retention_pause_seconds: float = Field(default=0.05, ge=0)
    retention_interval_seconds: float = Field(default=60.0, gt=0)
    # --- worker pools and Python tasks (issue 11: 4, 5) ---
    # Comma-separated pools a worker takes work from (`taskmesh-worker --pool` adds to them).
    worker_pools: str = "default"
    # module:attribute of the worker's taskmesh.tasks.TaskRegistry (`--tasks`); empty: none.
    worker_tasks: str = ""
    # Threads that run sync Python tasks (a sync task holds one while it runs).
    worker_task_threads: int = Field(default=32, ge=1)

    # --- service accounts, API keys and the audit log (issue 14, items 5 and 6) ---
    # Lifetime of a new API key when its request names none, and the longest one allowed.
    api_key_default_ttl_days: int = Field(default=90, ge=1)
    api_key_max_ttl_days: int = Field(default=365, ge=1)
    # Seconds between each api_server's writes of its keys' last-used times (one statement for
    # every key used meanwhile, never one per call).
    api_key_last_used_flush_seconds: float = Field(default=10.0, gt=0)
    # Days audit events are kept (the schedulers' retention purge calls
    # taskmesh.db.audit.purge_audit_events with now - this); 0 keeps them for ever.
    audit_retention_days: int = Field(default=365, ge=0)

    log_level: str = "INFO"
    log_json: bool = True

    # --- secrets (issue 14, item 4): taskmesh.secrets.box ---
    # `key_id:base64key,...`; the first seals new values, all open. Empty: the development key
    # in development; in production, secrets are off (creating one is refused, and a job that
    # references one fails, naming it) until keys are set.
    secret_keys: str = ""

    @field_validator("secret_keys")
    @classmethod
    def _secret_keys(cls, value: str) -> str:
        if value.strip():
            SecretBox.from_setting(value)  # KeyringError (a ValueError) names the problem
        return value

    @field_validator("egress_allow", "egress_deny")
    @classmethod
    def _egress_rules(cls, value: str, info: ValidationInfo) -> str:
        parse_rules(value, f"TASKMESH_{(info.field_name or '').upper()}")
        return value

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def secret_box(self) -> SecretBox | None:
        """The keyring secrets are sealed with; None when secrets are off (production, no keys)."""
        if self.secret_keys.strip():
            return SecretBox.from_setting(self.secret_keys)
        return SecretBox.from_setting(DEV_SECRET_KEYS) if self.is_development else None

    def check_secure(self) -> None:
        """Refuse production start-up with secrets anyone can read in this repository."""
        if self.is_development:
            return
        problems = []
        if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
            problems.append("TASKMESH_JWT_SECRET must be set to a secret of at least 32 characters")
        if self.admin_password == DEV_ADMIN_PASSWORD:
            problems.append("TASKMESH_ADMIN_PASSWORD must be set to a non-default password")
        if self.worker_password == DEV_WORKER_PASSWORD:
            problems.append("TASKMESH_WORKER_PASSWORD must be set to a non-default password")
        if self.secret_keys.strip() == DEV_SECRET_KEYS:
            problems.append("TASKMESH_SECRET_KEYS must not be the development key")
        if self.password_hash_time_cost < 3 or self.password_hash_memory_kib < 65536:
            problems.append(
                "TASKMESH_PASSWORD_HASH_TIME_COST / _MEMORY_KIB must not be below argon2's defaults (3, 65536)"
            )
        if self.metrics_token and len(self.metrics_token) < 32:
            problems.append("TASKMESH_METRICS_TOKEN, when set, must be at least 32 characters")
        if problems:
            raise InsecureSettingsError("; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
