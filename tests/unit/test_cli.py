"""The `kuaijing` command in-process: help that names every command, errors translated to exit codes and one line
each, a taken port named with its holder before anything starts, and the demo's world kept apart from `up`'s."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from services import cli
from services.demo import DemoSettings
from shared.errors import KuaijingError


@pytest.fixture(autouse=True)
def no_kuaijing_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("KUAIJING_")]:
        monkeypatch.delenv(name)


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("up", "demo", "simulate", "serve", "infra", "health", "migrate", "registry", "eta", "compare",
                    "contract"):  # fmt: skip
        assert f"    {command} " in out or f"    {command}\n" in out, command


def test_demo_help_names_its_ports_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    out = capsys.readouterr().out
    for flag in ("--hours", "--speedup", "--call-every", "--seed", "--record", "--stop-after-night"):
        assert flag in out, flag


def test_an_unreadable_registry_file_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["registry", "import", str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kuaijing: cannot read ")
    assert "missing.json" in err


def test_a_registry_file_of_the_wrong_shape_names_the_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "registry.json"
    path.write_text('{"units": [{"id": "U-1"}]}')
    assert cli.main(["registry", "import", str(path)]) == 1
    err = capsys.readouterr().err
    assert "is not a registry document" in err
    assert "units.0.platform_id" in err
    path.write_text("{not json")
    assert cli.main(["registry", "import", str(path)]) == 1
    assert "is not JSON" in capsys.readouterr().err


def test_bad_configuration_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUAIJING_EMBEDDED_POSTGRES_PORT", "not-a-port")
    assert cli.main(["migrate"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_a_taken_port_is_named_with_its_holder_and_the_variable_that_moves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("KUAIJING_DISPATCHER_PORT", str(port))
        with pytest.raises(KuaijingError) as refused:
            cli._check_ports_free("127.0.0.1")
    message = str(refused.value)
    assert f"port {port} is taken by pid {os.getpid()} (" in message
    assert "KUAIJING_DISPATCHER_PORT" in message


def test_the_ports_up_takes_follow_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAIJING_JT808_PORT", "17000")
    assert cli._ports_to_take()[17000] == "KUAIJING_JT808_PORT"
    monkeypatch.setenv("KUAIJING_JT808_ENABLED", "false")
    assert 17000 not in cli._ports_to_take()


def test_the_demo_never_reads_the_real_infrastructure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUAIJING_DEMO_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KUAIJING_DEMO_INGEST_PORT", "28081")
    real = {
        "KUAIJING_KAFKA_BOOTSTRAP": "kafka.prod:9093",
        "KUAIJING_DATABASE_URL": "postgresql://prod/kuaijing",
        "KUAIJING_KAFKA_SASL_PASSWORD": "secret",
        "KUAIJING_INGEST_PORT": "8081",
        "KUAIJING_LOG_LEVEL": "DEBUG",
        "PATH": "/usr/bin",
    }
    environment = DemoSettings().environment(real)
    assert not {"KUAIJING_KAFKA_BOOTSTRAP", "KUAIJING_DATABASE_URL", "KUAIJING_KAFKA_SASL_PASSWORD"} & set(environment)
    assert environment["KUAIJING_DATA_DIR"] == str(tmp_path)
    assert environment["KUAIJING_INGEST_PORT"] == "28081"
    assert environment["KUAIJING_EMBEDDED_KAFKA_PORT"] == "19092"
    assert environment["KUAIJING_CLOCK"] == "event"
    assert (environment["KUAIJING_LOG_LEVEL"], environment["PATH"]) == ("DEBUG", "/usr/bin")


def test_the_published_contract_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["contract", "--check"]) == 0
    assert capsys.readouterr().out.endswith(": current\n")


def test_infra_status_of_a_fresh_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUAIJING_DATA_DIR", str(tmp_path))
    assert cli.main(["infra", "status"]) == 0
    out = capsys.readouterr().out
    assert f"data dir  {tmp_path}" in out
    assert "kafka     stopped" in out
    assert "postgres  stopped" in out


def test_the_simulation_needs_every_role_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUAIJING_API_TOKENS", "terminal:t1,dispatcher:d1")
    assert cli.main(["simulate"]) == 1
    assert "KUAIJING_API_TOKENS for admin, viewer" in capsys.readouterr().err


def test_compare_plays_a_short_night_and_prints_the_policies_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", "--hours", "0.1", "--training-weeks", "1", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "seed 3" in out
    for policy in ("(a) nearest by straight line", "(b) best ETA, configured model", "(c) best ETA, learned model"):
        assert policy in out
    assert "(c) - (a):" in out
    with pytest.raises(SystemExit) as refused:
        cli.main(["compare", "--level", "1.5"])
    assert refused.value.code == 2
    assert "1.5 is not a share between 0 and 1" in capsys.readouterr().err
