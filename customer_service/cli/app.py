"""The root ``customer-service`` group, ``serve``, and the one place errors are converted."""

# Heavy modules (trio, rich, storage, server) are imported inside the functions that
# use them, so `customer-service --help` does not pay for them.
# ruff: noqa: PLC0415

from __future__ import annotations

import errno
from typing import Any, Final

import click

from customer_service import __version__
from customer_service.cli.agent_routing import set_agent
from customer_service.cli.agents import agents
from customer_service.cli.blocks import blocks
from customer_service.cli.campaigns import campaigns
from customer_service.cli.canned import canned
from customer_service.cli.common import CONFIG_ENV, DEFAULT_CONFIG_FILE, State, current_config
from customer_service.cli.config_cmd import config_group
from customer_service.cli.contacts import contacts
from customer_service.cli.conversation_export import export
from customer_service.cli.conversation_labels import label, unlabel
from customer_service.cli.conversation_search import search
from customer_service.cli.conversations import conversations
from customer_service.cli.db import db, stats
from customer_service.cli.doctor import doctor
from customer_service.cli.reports import reports
from customer_service.cli.tokens import tokens
from customer_service.cli.webhooks import webhooks
from customer_service.errors import CustomerServiceError, the_error

_WRITE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _single_error(exc: BaseException) -> CustomerServiceError | None:
    """The ``CustomerServiceError`` behind ``exc``: trio wraps an error raised inside a
    nursery (the store's, the server's) in exception groups, with the cancellations it
    caused beside it; one error is still that one error to the user."""
    import trio

    return the_error(exc, besides=(trio.Cancelled,))


class CliGroup(click.Group):
    """The root group. Every ``CustomerServiceError`` becomes a click error here, and only here.

    Subcommands (and the group callback) run inside ``Group.invoke``, so one
    ``try`` covers them all: a bad config file, a duplicate agent, a database
    that cannot be reached all print ``Error: <message>`` and exit 1, without a
    traceback. Anything else is a bug and keeps its traceback.
    """

    def main(self, args: Any = None, *pass_args: Any, **kwargs: Any) -> Any:
        """Refuse a command line that is not UTF-8 before any command sees it: Python hands
        such bytes over as lone surrogates, which no store or terminal can encode."""
        import sys

        for arg in sys.argv[1:] if args is None else args:
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raw = arg.encode("utf-8", "surrogateescape")
                click.echo(f"Error: the command line is not UTF-8: {repr(raw[:80])[1:]}", err=True)
                sys.exit(2)
        return super().main(args, *pass_args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CustomerServiceError, BaseExceptionGroup) as exc:
            error = _single_error(exc)
            if error is None:
                raise
            raise click.ClickException(error.message) from exc
        except OSError as exc:
            # Output that cannot be written (stdout on a full disk): one line. A closed
            # pipe (``| head``) is click's, which ends quietly.
            if exc.errno not in _WRITE_ERRNOS:
                raise
            where = f" {exc.filename}" if exc.filename else " the output"
            raise click.ClickException(f"cannot write{where}: {exc.strerror}") from exc


@click.group(cls=CliGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH", envvar=CONFIG_ENV,
              type=click.Path(dir_okay=False, path_type=str),
              help=f"TOML config file [env: {CONFIG_ENV}; default: ./{DEFAULT_CONFIG_FILE} "
                   "if it exists, else the embedded defaults].")
@click.version_option(__version__, "--version", "-V", prog_name="customer-service",
                      message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Live customer-service chat server: visitors, agents and an AI over WebSocket.

    Without a command it runs the server, like 'serve':

        customer-service --config=prod.toml

    Start with 'customer-service config init' to write a commented config file,
    then 'customer-service agents add USERNAME' for the first agent.
    """
    ctx.obj = State.from_option(config_path)
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
@click.option("--host", metavar="ADDRESS", help="Listen on this address instead of [server] host.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Listen on this port instead of [server] port (0 picks a free one).")
def serve(host: str | None, port: int | None) -> None:
    """Run the server (what the bare command does).

    Runs until SIGINT or SIGTERM. Prints a banner with the URLs once the port is
    bound; logs go to stderr.
    """
    config = current_config()
    if host is not None:
        config = config.with_changes(server__host=host)
    if port is not None:
        config = config.with_changes(server__port=port)

    from customer_service.cli.banner import print_banner
    from customer_service.logs import configure_logging
    from customer_service.server.run import run_server

    configure_logging(config.log)

    def banner(base_url: str) -> None:
        print_banner(config, base_url)

    run_server(config, banner=banner)


cli.add_command(config_group)
cli.add_command(agents)
agents.add_command(set_agent)
cli.add_command(blocks)
cli.add_command(campaigns)
cli.add_command(conversations)
conversations.add_command(label)
conversations.add_command(unlabel)
conversations.add_command(search)
conversations.add_command(export)
cli.add_command(contacts)
cli.add_command(db)
cli.add_command(stats)
cli.add_command(reports)
cli.add_command(doctor)
cli.add_command(canned)
cli.add_command(tokens)
cli.add_command(webhooks)


def main() -> None:
    """Console entry point (``customer-service``, ``python -m customer_service``, the zipapp)."""
    cli.main(prog_name="customer-service")
