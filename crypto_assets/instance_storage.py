"""The production instance's storages: dagster-postgres's, with ``DAGSTER_PG_URL`` checked first.

dagster.prod.yaml and dagster.cluster.yaml name these classes, so every process that opens the
instance (the command line, webserver, daemon, run and Celery workers) checks the URL before
dagster-postgres uses it: a plain ``postgresql://`` URL is normalised to psycopg2 (SQLAlchemy 2.1
would pick psycopg 3, not installed), and a wrong user, database or port fails in the one line
``python -m crypto_assets.instance`` gives at setup, instead of minutes of connection retries.
"""

from __future__ import annotations

from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


def _arguments(inst_data, config_value) -> dict:
    from crypto_assets.instance import checked_run_time_url

    return {
        "inst_data": inst_data,
        "postgres_url": checked_run_time_url(pg_url_from_config(config_value)),  # checked once per process
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class CheckedPostgresRunStorage(PostgresRunStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return cls(**_arguments(inst_data, config_value))


class CheckedPostgresEventLogStorage(PostgresEventLogStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(**_arguments(inst_data, config_value))


class CheckedPostgresScheduleStorage(PostgresScheduleStorage):
    @classmethod
    def from_config_value(cls, inst_data, config_value):  # ty: ignore[invalid-method-override]
        return cls(**_arguments(inst_data, config_value))
