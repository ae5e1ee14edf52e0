"""Admin CLI: ``flask --app pneumonia_web users create|disable|enable|reset-password|list`` and
``flask --app pneumonia_web tokens create|revoke|list``. Runs with the UI's environment
(``API_URL``, ``API_TOKEN``) and is recorded in the audit trail as ``service:cli-<login>``."""

from __future__ import annotations

import getpass
import sys

import click
from flask import current_app
from flask.cli import AppGroup

from pneumonia_web.api_client import ApiClient, ApiError, ApiUnavailable, Caller

users = AppGroup("users", help="Manage clinician and admin accounts.")
tokens = AppGroup("tokens", help="Manage API tokens for integrations (one per calling system).")


def _admin(method: str, path: str, **kwargs) -> dict:
    client: ApiClient = current_app.extensions["api_client"]
    try:
        return client.admin(method, path, Caller(actor=f"cli-{getpass.getuser()}"), **kwargs)
    except (ApiError, ApiUnavailable) as exc:
        raise click.ClickException(str(exc)) from None


def _password_option(prompt: bool) -> str | None:
    """A password from standard input when ``--password-stdin``, else None (the API generates one)."""
    if not prompt:
        return None
    return sys.stdin.readline().rstrip("\n")


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["clinician", "admin"]), default="clinician", show_default=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input instead of generating one")
def create_user(username: str, role: str, password_stdin: bool) -> None:
    """Create an account; prints a generated one-time password unless one is given."""
    answer = _admin("POST", "users", json={"username": username, "role": role,
                                           "password": _password_option(password_stdin)})
    click.echo(f"created {answer['user']['username']} ({answer['user']['role']})")
    if "password" in answer:
        click.echo(f"password (shown once): {answer['password']}")


@users.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Disable an account and end its sessions."""
    _admin("POST", f"users/{username}/disable", json={})
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Enable a disabled account."""
    _admin("POST", f"users/{username}/enable", json={})
    click.echo(f"enabled {username}")


@users.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="read the new password from standard input")
def reset_password(username: str, password_stdin: bool) -> None:
    """Set a new password (generated unless given) and end the account's sessions."""
    answer = _admin("POST", f"users/{username}/password", json={"password": _password_option(password_stdin)})
    click.echo(f"password of {username} reset")
    if "password" in answer:
        click.echo(f"password (shown once): {answer['password']}")


@users.command("list")
def list_users() -> None:
    """Every account with its role and state."""
    for user in _admin("GET", "users")["users"]:
        state = "disabled" if user["disabled"] else "active"
        click.echo(f"{user['username']:<24} {user['role']:<10} {state:<9} created {user['created_utc']} "
                   f"by {user['created_by']}")


@tokens.command("create")
@click.argument("name")
def create_token(name: str) -> None:
    """Create a token for one integration; prints it once."""
    answer = _admin("POST", "tokens", json={"name": name})
    click.echo(f"token for {answer['name']} (shown once): {answer['token']}")


@tokens.command("revoke")
@click.argument("name")
def revoke_token(name: str) -> None:
    """Revoke an integration's token at once."""
    _admin("DELETE", f"tokens/{name}")
    click.echo(f"revoked {name}")


@tokens.command("list")
def list_tokens() -> None:
    """Every live integration token (names only)."""
    for token in _admin("GET", "tokens")["tokens"]:
        click.echo(f"{token['name']:<24} created {token.get('created_utc', '')} by {token.get('created_by', '')}")
