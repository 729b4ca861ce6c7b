"""The Dagster instance a run opens: never set up, the wrong kind for the deployment, or a PostgreSQL URL
that cannot work, each fails in one line saying what is wrong (crypto_assets/instance.py,
crypto_assets/instance_storage.py), at run time as at setup."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from crypto_assets import instance as instance_setup
from crypto_assets.instance import InstanceSetupError, check_home, prepare_home

ROOT = Path(__file__).resolve().parents[1]
# What a command-line run does in a Python process: load the code location, then open the instance.
A_RUN = (
    "import crypto_assets.definitions, dagster as dg; dg.DagsterInstance.get().get_run_records(limit=1); print('RAN')"
)


def _children(code: list[str], env: dict[str, str], count: int = 4) -> list[subprocess.CompletedProcess]:
    processes = [
        subprocess.Popen(code, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_runs_on_a_never_set_up_home_fail_in_one_line_then_the_setup_runs_once(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DEPLOYMENT": "local"}
    started = time.monotonic()
    for result in _children([sys.executable, "-c", A_RUN], env):
        assert result.returncode != 0 and "RAN" not in result.stdout
        last = result.stderr.strip().splitlines()[-1]
        assert f"python -m crypto_assets.instance --home {home}" in last, result.stderr
        assert "alembic" not in result.stderr and "already exists" not in result.stderr
    assert list(home.iterdir()) == []  # nobody created tables behind the setup's back
    # Four setups at once take turns on the home's lock; then runs find it ready.
    for result in _children([sys.executable, "-m", "crypto_assets.instance", "--home", str(home)], env):
        assert result.returncode == 0, result.stderr
    for result in _children([sys.executable, "-c", A_RUN], env, count=2):
        assert result.returncode == 0 and "RAN" in result.stdout, result.stderr
    assert time.monotonic() - started < 300


def test_the_prod_deployment_refuses_a_sqlite_home(tmp_path, monkeypatch):
    home = prepare_home(tmp_path / "home", "local")
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "prod")
    with pytest.raises(InstanceSetupError, match=r"needs the Dagster instance on PostgreSQL.*SQLite") as raised:
        check_home(str(home))
    assert "\n" not in str(raised.value)
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", "local")
    check_home(str(home))


def test_the_prod_deployment_refuses_a_sqlite_home_when_the_code_loads(tmp_path):
    home = prepare_home(tmp_path / "home", "local")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DEPLOYMENT": "prod"}
    result = subprocess.run(
        [sys.executable, "-c", A_RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode != 0 and "RAN" not in result.stdout
    assert "holds a SQLite instance" in result.stderr.strip().splitlines()[-1], result.stderr


def _bad(url: str, **parts) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(**parts).render_as_string(hide_password=False)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"username": "no_such_role_ca", "password": "hunter2-secret"}, "has no role 'no_such_role_ca'"),
        ({"database": "no_such_database_ca"}, "has no database 'no_such_database_ca'"),
        ({"port": 1}, "connection refused"),
    ],
)
def test_postgres_errors_at_run_time_are_the_setup_errors(postgres_url, tmp_path, monkeypatch, change, expected):
    home = prepare_home(tmp_path / "home", "prod")
    bad = _bad(postgres_url, **change)
    monkeypatch.setenv(instance_setup.PG_URL_ENV, bad)
    instance_setup.checked_run_time_url.cache_clear()
    started = time.monotonic()
    with pytest.raises(InstanceSetupError) as raised:
        dg.DagsterInstance.from_config(str(home))
    assert time.monotonic() - started < 30  # no minutes of connection retries
    message = str(raised.value)
    assert expected in message and "\n" not in message and "hunter2" not in message
    if "database" not in change:  # setup creates a missing database; a wrong role or port it reports alike
        with pytest.raises(InstanceSetupError) as at_setup:
            instance_setup.ensure_database(bad)
        assert str(at_setup.value) == message


def test_a_port_that_is_not_a_number_is_one_line(postgres_url, tmp_path, monkeypatch):
    home = prepare_home(tmp_path / "home", "prod")
    monkeypatch.setenv(instance_setup.PG_URL_ENV, postgres_url.replace(":5432/", ":notaport/"))
    instance_setup.checked_run_time_url.cache_clear()
    with pytest.raises(InstanceSetupError, match="numeric port"):
        dg.DagsterInstance.from_config(str(home))
    with pytest.raises(InstanceSetupError, match="numeric port"):
        instance_setup.postgres_url()


def test_a_plain_postgresql_url_works_at_run_time(postgres_url, tmp_path, monkeypatch):
    home = prepare_home(tmp_path / "home", "prod")
    plain = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    assert instance_setup.postgres_url(plain) == postgres_url
    monkeypatch.setenv(instance_setup.PG_URL_ENV, plain)
    instance_setup.checked_run_time_url.cache_clear()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_records(limit=1) == []
