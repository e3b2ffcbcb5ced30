"""README.md tells a newcomer how to log in to the demo: every demo account is listed."""

from __future__ import annotations

from pathlib import Path

from server.demo.tree import DEMO_PASSWORD, demo_accounts, demo_logins_text
from server.models import Role

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_demo_login_with_the_password() -> None:
    text = README.read_text(encoding="utf-8")
    assert f"`{DEMO_PASSWORD}`" in text
    for account in demo_accounts():
        if account.role is Role.OPERATOR and account.unit.count("-") == 2:
            continue  # a commune operator: the table gives the rule and examples
        assert f"`{account.username}`" in text, f"README does not list {account.username}"
    assert "`kt.<commune code in lower case>`" in text


def test_the_printed_logins_name_every_role() -> None:
    text = demo_logins_text("http://127.0.0.1:8080/")
    for word in ("administrator", "chair", "secretary", "operator"):
        assert word in text
    assert "thuky.cm-nc" in text
