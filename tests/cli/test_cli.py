"""The real `vrm` app through Typer's runner: outputs, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from openvrm.cli import context as cli_context
from openvrm.cli.main import COMMANDS, app, registered

PASS = "a long enough passphrase"


class Vrm:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()
        self.env = {"OPENVRM_PASSPHRASE": PASS}

    def __call__(
        self, *args: str, code: int = 0, env: dict[str, str] | None = None, input: str | None = None
    ):  # type: ignore[no-untyped-def]
        result = self.runner.invoke(
            app, ["--home", str(self.home), *args], env=self.env if env is None else env, input=input
        )
        assert result.exit_code == code, (result.exit_code, result.output, result.stderr)
        assert "Traceback" not in result.output + result.stderr
        return result

    def json(self, *args: str, code: int = 0):  # type: ignore[no-untyped-def]
        return json.loads(self(*args, "--json", code=code).stdout)


def person_with_vendor(home: Path, vendor: str, *, email: str = "anna@example.org") -> tuple[Vrm, str]:
    """A new vault whose person (Anna Example) has a name and an e-mail address, and one vendor; the
    runner and the vendor's id."""
    vrm = Vrm(home)
    vrm("init")
    vrm("profile", "set", "name", "Anna Example")
    vrm("profile", "set", "email", email)
    return vrm, vrm.json("vendors", "add", vendor)["id"]


@pytest.fixture
def vrm(tmp_path: Path) -> Vrm:
    v = Vrm(tmp_path / "home")
    v("init")
    return v


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in (
        "init",
        "passwd",
        "profile",
        "vendors",
        "docs",
        "export",
        "import",
        "backup",
        "check",
        "serve",
    ):
        assert name in result.output


def test_the_lazy_command_table_is_what_the_modules_register() -> None:
    # `vrm` loads a command's module only when it runs; its table must name every command, in the
    # modules that define it, in the order they were always listed.
    assert sorted(typer.main.get_group(registered()).commands) == sorted(COMMANDS)
    for name, modules in COMMANDS.items():
        assert name in typer.main.get_group(registered(modules)).commands
    result = CliRunner().invoke(app, ["--help"])
    at = [result.output.find(f"│ {n} ") for n in COMMANDS]  # each listed in its row of the panel
    assert -1 not in at and at == sorted(at)


def test_help_paragraphs_are_not_broken_where_the_source_wrapped_them() -> None:
    result = CliRunner().invoke(app, ["docs", "import", "--help"], terminal_width=200)
    assert result.exit_code == 0
    # One paragraph of the docstring, wrapped at "its" in the source, is one line on a wide terminal.
    assert "each bill is linked to its vendor and contract. Every file gets an outcome" in result.output


def test_a_command_loads_only_what_it_needs(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from openvrm.cli.main import main\n"
        "sys.argv = ['vrm', 'upcoming', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ['fastapi', 'openvrm.server', 'openvrm.mail.gateway', 'openvrm.relay', 'alembic']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: vrm upcoming" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_unknown_command_is_a_usage_error_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["upcomming"])
    assert result.exit_code == 2
    assert "No such command" in result.output + result.stderr
    assert "upcoming" in result.output + result.stderr


def test_commands_without_a_vault_say_so_and_create_nothing(tmp_path: Path) -> None:
    v = Vrm(tmp_path / "nowhere")
    result = v("profile", "get", code=1)
    assert "no vault" in result.stderr and "vrm init" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nowhere").exists()


def test_init_twice_fails(vrm: Vrm) -> None:
    assert "already exists" in vrm("init", code=1).stderr


def test_profile_round_trip_and_json(vrm: Vrm) -> None:
    vrm("profile", "set", "email", "me@example.org")
    vrm("profile", "set", "address.home", "--street", "1 rue X", "--city", "Paris", "--country", "fr")
    assert vrm.json("profile", "get") == {
        "address.home": {"street": "1 rue X", "city": "Paris", "country": "FR"},
        "email": "me@example.org",
    }
    vrm("profile", "set", "email", "new@example.org")
    history = vrm.json("profile", "history", "email")
    assert [h["value"] for h in history] == ["me@example.org", "new@example.org"]
    assert vrm("profile", "get", "email").stdout.strip() == "new@example.org"


def test_bad_value_is_one_line_and_changes_nothing(vrm: Vrm) -> None:
    vrm("profile", "set", "email", "me@example.org")
    result = vrm("profile", "set", "email", "nope", code=1)
    assert result.stderr.strip().startswith("error: not a valid e-mail address")
    assert len(result.stderr.strip().splitlines()) == 1
    assert vrm.json("profile", "get") == {"email": "me@example.org"}


def test_wrong_passphrase_exit_code(vrm: Vrm) -> None:
    result = vrm("profile", "get", code=3, env={"OPENVRM_PASSPHRASE": "definitely wrong"})
    assert result.stderr.strip() == "error: wrong passphrase"


def test_passphrase_file(vrm: Vrm, tmp_path: Path) -> None:
    f = tmp_path / "pass.txt"
    f.write_text(PASS + "\n")
    vrm("--passphrase-file", str(f), "profile", "get", env={})
    vrm("profile", "get", env={"OPENVRM_PASSPHRASE_FILE": str(f)})
    missing = vrm("--passphrase-file", str(tmp_path / "nope"), "profile", "get", code=1, env={})
    assert "passphrase file not found" in missing.stderr


def test_no_passphrase_without_a_terminal_is_a_clear_error(vrm: Vrm) -> None:
    result = vrm("profile", "get", code=3, env={}, input="")
    assert "no passphrase" in result.stderr


def test_passwd(vrm: Vrm) -> None:
    vrm("profile", "set", "email", "me@example.org")
    vrm("passwd", env={"OPENVRM_PASSPHRASE": PASS, "OPENVRM_NEW_PASSPHRASE": "the new passphrase"})
    vrm("profile", "get", code=3)
    assert vrm(
        "profile", "get", "email", env={"OPENVRM_PASSPHRASE": "the new passphrase"}
    ).stdout.strip() == ("me@example.org")


def test_cli_session_unlock_and_lock(vrm: Vrm) -> None:
    vrm("profile", "set", "email", "me@example.org")
    session = vrm.json("unlock", "--minutes", "5")["session"]
    assert vrm("profile", "get", "email", env={"OPENVRM_SESSION": session}).stdout.strip() == "me@example.org"
    assert vrm.json("lock")["sessions_ended"] == 1
    result = vrm("profile", "get", env={"OPENVRM_SESSION": session}, code=3)
    assert "vrm unlock" in result.stderr


def test_vendors_docs_shares(vrm: Vrm, tmp_path: Path) -> None:
    v = vrm.json(
        "vendors", "add", "Acme", "--domain", "https://www.Acme.example/", "--customer-number", "C-1"
    )
    assert v["domains"] == ["acme.example"]
    rel_id = v["relationship"]["id"]
    folder = tmp_path / "bills"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(b"%PDF-1.4 a")
    (folder / "b.txt").write_bytes(b"receipt b")
    (folder / "copy.pdf").write_bytes(b"%PDF-1.4 a")
    results = vrm.json("docs", "add", str(folder), "--vendor", v["id"])
    assert sorted(r["status"] for r in results) == ["duplicate", "imported", "imported"]
    listed = vrm.json("docs", "list")
    assert len(listed) == 2
    out = tmp_path / "out.pdf"
    doc_id = next(d["id"] for d in listed if d["filename"] == "a.pdf")
    vrm("docs", "get", doc_id, "-o", str(out))
    assert out.read_bytes() == b"%PDF-1.4 a"
    vrm("docs", "get", doc_id, "-o", str(out), code=1)
    shown = vrm.json("vendors", "show", v["id"])
    assert len(shown["documents"]) == 2
    vrm("profile", "set", "email", "me@example.org")
    share = vrm.json("shares", "add", rel_id, "email", "--purpose", "billing")
    assert [h["vendor"] for h in vrm.json("shares", "holders", "email")] == ["Acme"]
    assert vrm.json("shares", "holders", "Email") == vrm.json("shares", "holders", "email")
    assert vrm.json("shares", "holders", "address") == []  # every address field, whatever its label
    assert "unknown field type" in vrm("shares", "holders", "emial", code=1).stderr
    vrm("shares", "revoke", share["id"])
    assert vrm.json("shares", "holders", "email") == []


def test_text_from_outside_is_printed_as_itself_never_as_markup(
    vrm: Vrm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A vendor's name comes from invoices and from vendors themselves: "[/x]" once crashed every table
    # that showed it, and "[link=...]" or ":smile:" would have been rendered.
    name = "[/x] [link=https://evil.example]Acme[/link] :smile: [bold]"
    v = vrm.json("vendors", "add", name)
    # a wide console, so that a table keeps the name on one line (Rich reads COLUMNS only when the
    # console is made, at import)
    monkeypatch.setattr(cli_context.out, "_width", 300)
    for args in (("vendors", "list"), ("vendors", "show", v["id"]), ("vendors", "search", "acme", "--mine")):
        result = vrm(*args)
        assert name in result.stdout, args
    bill = tmp_path / "[bold]bill.txt"
    bill.write_bytes(b"a receipt")
    assert "[bold]bill.txt" in vrm("docs", "add", str(bill), "--vendor", v["id"]).stdout
    assert "[bold]bill.txt" in vrm("docs", "list").stdout


def test_missing_document_file(vrm: Vrm, tmp_path: Path) -> None:
    result = vrm("docs", "add", str(tmp_path / "missing.pdf"), code=1)
    assert "no such file" in result.stderr


def test_unknown_ids(vrm: Vrm) -> None:
    assert "no vendor" in vrm("vendors", "show", "nope", code=1).stderr
    assert "no document" in vrm("docs", "show", "nope", code=1).stderr


def test_check_and_status(vrm: Vrm) -> None:
    vrm("profile", "set", "email", "me@example.org")
    report = vrm.json("check")
    assert report["ok"] is True and report["records_checked"] == 1
    status = vrm.json("status")
    assert status["exists"] is True and status["backend"] == "sqlite"


def test_check_reports_damage_with_exit_4(vrm: Vrm) -> None:
    blob_dir = vrm.home / "blobs"
    vrm("vendors", "add", "Acme")
    f = vrm.home / "doc.txt"
    f.write_bytes(b"some file")
    vrm("docs", "add", str(f))
    (blob := next(p for p in blob_dir.rglob("*") if p.is_file())).write_bytes(b"\x01" + b"0" * 40)
    report = vrm.json("check", code=4)
    assert report["ok"] is False
    assert [p["id"] for p in report["problems"]] == [blob.name]


def test_tokens(vrm: Vrm) -> None:
    created = vrm.json("tokens", "create", "script")
    assert created["token"].startswith("vrm_")
    assert [t["name"] for t in vrm.json("tokens", "list")] == ["script"]
    vrm("tokens", "revoke", created["id"])
    assert vrm.json("tokens", "list") == []
    vrm("tokens", "revoke", created["id"], code=1)


def test_demo_vault(tmp_path: Path) -> None:
    v = Vrm(tmp_path / "demo")
    info = v.json("demo")
    assert info["created"] is True
    env = {"OPENVRM_PASSPHRASE": info["passphrase"]}
    vendors = json.loads(v("vendors", "list", "--json", env=env).stdout)
    assert len(vendors) == info["counts"]["vendors"] >= 10
    docs = json.loads(v("docs", "list", "--json", env=env).stdout)
    assert len(docs) == info["counts"]["documents"] > 0
    assert all(d["media_type"] == "application/pdf" for d in docs)
    assert json.loads(v("check", "--json", env=env).stdout)["ok"] is True
    # The demo mailbox: three messages through the real gateway, one bill imported, one leak flagged.
    mails = json.loads(v("mail", "messages", "--json", env=env).stdout)
    assert len(mails) == info["counts"]["mail"] == 3
    assert [m["leak"]["reached"] for m in mails if m["leak"]["leaked"]] == ["databroker.example"]
    assert [b["status"] for m in mails for b in m["bills"]] == ["imported"]
    assert (tmp_path / "demo" / "demo-dns-zone.json").is_file()
    assert v.json("demo", "--if-missing")["created"] is False


def test_corrupted_vault_file_is_one_line_exit_4(vrm: Vrm) -> None:
    for extra in ("-wal", "-shm"):
        (vrm.home / f"vault.db{extra}").unlink(missing_ok=True)
    (vrm.home / "vault.db").write_bytes(b"garbage" * 1000)
    result = vrm("profile", "get", code=4)
    assert result.stderr.startswith("error: the vault database is damaged or not a vault")
    assert len(result.stderr.strip().splitlines()) == 1
    assert (vrm.home / "vault.db").read_bytes() == b"garbage" * 1000
