"""`collectivia serve` (the chat) and `collectivia users …` (the users file of password login)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from collectivia.cli.common import fail, load_settings

users_app = typer.Typer(help="Gérer les comptes de connexion par mot de passe (fichier COLLECTIVIA_USERS).",
                        no_args_is_help=True)

FILE_OPTION = typer.Option(None, "--file", "-f", help="Fichier des utilisateurs (défaut : COLLECTIVIA_USERS).")


def _users_file(given: Optional[Path]) -> Path:
    if given is not None:
        return given

    return Path(load_settings().users)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            fail("aucun mot de passe reçu sur l'entrée standard")
        return line.rstrip("\r\n")
    return typer.prompt("Mot de passe", hide_input=True, confirmation_prompt="Confirmez le mot de passe")


def _change_with_password(file: Optional[Path], from_stdin: bool, change):
    """Read the password, apply ``change(path, password)`` to the users file; a refusal ends with its message."""
    from chat_ui.accounts import AccountError

    path = _users_file(file)
    password = _read_password(from_stdin)
    try:
        return path, change(path, password)
    except AccountError as exc:
        fail(str(exc))


@users_app.command("add")
def users_add(
    user_id: str = typer.Argument(..., metavar="ID", help="Identifiant de connexion (ex. a.martin)."),
    name: str = typer.Option(..., "--name", "-n", help="Nom affiché (ex. « Alice Martin »)."),
    services: Optional[List[str]] = typer.Option(None, "--services", "-s",
                                                 help="Services de l'agent, séparés par des virgules ou répétés."),
    roles: Optional[List[str]] = typer.Option(None, "--roles", "-r",
                                              help="Rôles : agent (toujours), document_manager, admin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Lire le mot de passe sur l'entrée standard."),
    file: Optional[Path] = FILE_OPTION,
) -> None:
    """Ajouter un utilisateur (le mot de passe est demandé deux fois, ou lu avec --password-stdin)."""
    from chat_ui.accounts import add_user

    path, user = _change_with_password(file, password_stdin, lambda path, password: add_user(
        path, user_id, name=name, services=services or [], roles=roles or [], password=password))
    services_shown = ", ".join(sorted(user.services)) or "aucun (documents ouverts à tous seulement)"
    typer.echo(f"Utilisateur {user.id} ajouté à {path} — services : {services_shown} ; rôles : "
               f"{', '.join(sorted(user.roles))}")


@users_app.command("passwd")
def users_passwd(
    user_id: str = typer.Argument(..., metavar="ID", help="Identifiant de l'utilisateur."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Lire le mot de passe sur l'entrée standard."),
    file: Optional[Path] = FILE_OPTION,
) -> None:
    """Changer le mot de passe d'un utilisateur."""
    from chat_ui.accounts import set_password

    path, _ = _change_with_password(file, password_stdin, lambda path, password: set_password(path, user_id, password))
    typer.echo(f"Mot de passe de {user_id} changé ({path}).")


@users_app.command("remove")
def users_remove(
    user_id: str = typer.Argument(..., metavar="ID", help="Identifiant de l'utilisateur."),
    file: Optional[Path] = FILE_OPTION,
) -> None:
    """Retirer un compte du fichier des utilisateurs (son historique : « collectivia users forget »)."""
    from chat_ui.accounts import AccountError, remove_user

    path = _users_file(file)
    try:
        remove_user(path, user_id)
    except AccountError as exc:
        fail(str(exc))
    typer.echo(f"Compte {user_id} retiré de {path}. Son historique de conversations reste jusqu'à la purge ou à "
               f"« collectivia users forget {user_id} ».")


@users_app.command("list")
def users_list(
    as_json: bool = typer.Option(False, "--json", help="Liste en JSON sur la sortie standard."),
    file: Optional[Path] = FILE_OPTION,
) -> None:
    """Lister les utilisateurs (sans leurs empreintes de mot de passe)."""
    from chat_ui.accounts import AccountError, list_users

    try:
        rows = list_users(_users_file(file))
    except AccountError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Utilisateurs")
    for column in ("id", "nom", "services", "rôles", "mot de passe"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["name"], ", ".join(row["services"]) or "—", ", ".join(row["roles"]),
                      "oui" if row["password"] else "non")
    Console().print(table)


def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Adresse d'écoute (défaut : COLLECTIVIA_CHAT__HOST)."),
    port: Optional[int] = typer.Option(None, "--port", "-p", min=1, max=65535,
                                       help="Port (défaut : COLLECTIVIA_CHAT__PORT)."),
) -> None:
    """Servir le chat des agents (Chainlit, sans ouvrir de navigateur)."""
    from chat_ui.serve import ServeError, run

    settings = load_settings()
    if host is not None:
        settings.chat.host = host
    if port is not None:
        settings.chat.port = port
    try:
        run(settings)
    except ServeError as exc:
        fail(str(exc), exc.code)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    from collectivia.cli.privacy import add_user_commands

    app.command("serve")(serve)
    add_user_commands(users_app)  # users export|forget: the agent's chat data (rights of access and erasure)
    app.add_typer(users_app, name="users")
