"""Entry point of the `dersync` console script.

Each command builds the one `Settings` object, opens what it needs and runs one coroutine.
Errors an operator can act on (configuration, store, AEMO refusing credentials) print one line
per problem and exit non-zero without a traceback; `--debug` shows the traceback too.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from dersync import event_loop
from dersync.errors import ConfigError, DersyncError
from dersync.logs import configure_logging
from dersync.settings import Enumerations, Settings, load_settings
from dersync.vocabulary import ComplianceState, DriftKind, Level, Role, values

EXIT_CONFIG = 2
EXIT_FAILED = 1


class Context:
    def __init__(self, config: str | None, debug: bool) -> None:
        self.config = config
        self.debug = debug

    def settings(self, *, events_on_stdout: bool = False, **overrides: Any) -> Settings:
        """The settings, with logging set up for them (see `configure_logging` for the stream)."""
        settings = load_settings(self.config, **overrides)
        configure_logging(settings, events_on_stdout=events_on_stdout)
        return settings


def run_async(func: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run a command coroutine, turning dersync errors into one-line messages and exit codes."""

    @functools.wraps(func)
    @click.pass_obj
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> None:
        try:
            code: int | None = event_loop.run(func(ctx, *args, **kwargs))
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"dersync: configuration: {problem}", err=True)
            if ctx.debug:
                raise
            sys.exit(EXIT_CONFIG)
        except DersyncError as exc:
            click.echo(f"dersync: {exc}", err=True)
            if ctx.debug:
                raise
            sys.exit(EXIT_FAILED)
        except click.ClickException:
            raise  # a usage error found while running: click prints it and exits 2
        except KeyboardInterrupt:
            click.echo("dersync: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # the last line of defence for operators
            if ctx.debug:
                raise
            click.echo(f"dersync: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(code or 0)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (default: $DERSYNC_CONFIG, else config/dersync.toml if present).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="dersync")
@click.pass_context
def cli(click_ctx: click.Context, config: str | None, debug: bool) -> None:
    """Keep AEMO's WEM DER Register in step with the network operator's DER records."""
    click_ctx.obj = Context(config, debug)


@cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@run_async
async def import_command(ctx: Context, path: Path) -> int:
    """Load records from a JSON Lines file (or a JSON array) into the local store."""
    from dersync.cli.commands import do_import

    return await do_import(ctx.settings(), path)


@cli.command("sync")
@click.option("--once", is_flag=True, hidden=True, help="Accepted for old scripts: one pass is all `sync` does.")
@click.option("--dry-run", is_flag=True,
              help="Print what the pass would do to each due record (reads AEMO, writes nothing).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              help="Output of --dry-run.")
@run_async
async def sync_command(ctx: Context, once: bool, dry_run: bool, fmt: str) -> int:
    """Push every due record to AEMO once; exit 0 even when AEMO rejected some records."""
    from dersync.cli.commands import do_sync, do_sync_dry_run

    if dry_run:
        return await do_sync_dry_run(ctx.settings(), fmt)
    return await do_sync(ctx.settings())


@cli.command("reconcile")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--repair/--no-repair", default=None,
              help="Make missing or different records due so the next sync pushes them "
                   "(default: the reconcile_repair setting).")
@click.option("--sweep", "sweep", multiple=True, type=click.Choice(Enumerations().installation_stages),
              help="Also page through AEMO's installations at this stage to find orphans (repeatable).")
@click.option("--nmi-details", "nmi_details", is_flag=True,
              help="Compare every record's NMI details too (one request per NMI).")
@run_async
async def reconcile_command(ctx: Context, fmt: str, repair: bool | None, sweep: tuple[str, ...],
                            nmi_details: bool) -> int:
    """Compare the store with what AEMO holds and print the drift found; exit 0 when it ran."""
    from dersync.cli.commands import do_reconcile

    return await do_reconcile(ctx.settings(), fmt=fmt, repair=repair, sweep=sweep, nmi_details=nmi_details)


@cli.group("drift")
def drift_group() -> None:
    """Drift findings of reconciliation: where AEMO's register and the store disagree."""


@drift_group.command("list")
@click.option("--nmi", default=None, help="Only this NMI.")
@click.option("--kind", type=click.Choice(values(DriftKind)), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def drift_list(ctx: Context, nmi: str | None, kind: str | None, fmt: str) -> int:
    """The findings of the latest reconciliation pass."""
    from dersync.cli.commands import do_drift_list

    return await do_drift_list(ctx.settings(), nmi=nmi, kind=kind, fmt=fmt)


@cli.group("exceptions")
def exceptions_group() -> None:
    """Validation exceptions: what local validation or AEMO said is wrong."""


@exceptions_group.command("list")
@click.option("--open", "open_only", is_flag=True, help="Only exceptions still open.")
@click.option("--nmi", default=None, help="Only this NMI.")
@click.option("--level", type=click.Choice(values(Level)), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def exceptions_list(ctx: Context, open_only: bool, nmi: str | None, level: str | None, fmt: str) -> int:
    """List exceptions with their code, detail and AEMO transactionId."""
    from dersync.cli.commands import do_exceptions

    return await do_exceptions(ctx.settings(), open_only=open_only, nmi=nmi, level=level, fmt=fmt)


@cli.command("history")
@click.argument("nmi")
@click.option("--aemo", is_flag=True, help="Add AEMO's own versions (GET /installation/{nmi}/history, one request).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def history_command(ctx: Context, nmi: str, aemo: bool, fmt: str) -> int:
    """One NMI's timeline from the submission ledger, newest first: what was sent, when, AEMO's answer."""
    from dersync.cli.ledger import do_history

    return await do_history(ctx.settings(), nmi, fmt=fmt, aemo=aemo)


@cli.group("ledger")
def ledger_group() -> None:
    """The submission ledger: every request sent to AEMO, answered or not."""


@ledger_group.command("show")
@click.argument("entry_id", metavar="ID", type=click.IntRange(min=1))
@run_async
async def ledger_show(ctx: Context, entry_id: int) -> int:
    """Print the body a ledger entry sent (JSON), as AEMO received it."""
    from dersync.cli.ledger import do_ledger_show

    return await do_ledger_show(ctx.settings(), entry_id)


@ledger_group.command("export")
@click.option("--from", "start", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="First day (YYYY-MM-DD, in DERSYNC_TIMEZONE).")
@click.option("--to", "end", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last day, included (YYYY-MM-DD, in DERSYNC_TIMEZONE).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@run_async
async def ledger_export(ctx: Context, start: datetime, end: datetime, fmt: str) -> int:
    """Stream every request sent in a period, for an auditor (flat memory, any size)."""
    from dersync.cli.ledger import do_ledger_export

    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    return await do_ledger_export(ctx.settings(), start.date(), end.date(), fmt)


@cli.command("compliance")
@click.option("--from", "start", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only connections commissioned on or after this day (YYYY-MM-DD).")
@click.option("--to", "end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only connections commissioned on or before this day (YYYY-MM-DD).")
@click.option("--state", type=click.Choice(values(ComplianceState)), default=None,
              help="Only connections in this state.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def compliance_command(ctx: Context, start: datetime | None, end: datetime | None, state: str | None,
                             fmt: str) -> int:
    """Each AC connection against its submission deadline (met, late, overdue, due, not_applicable),
    with a summary by state and by month of commissioning."""
    from dersync.cli.compliance import do_compliance

    if start is not None and end is not None and end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    return await do_compliance(ctx.settings(), start=start.date() if start else None, end=end.date() if end else None,
                               state=state, fmt=fmt)


@cli.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@run_async
async def status_command(ctx: Context, fmt: str) -> int:
    """Records by sync state, open exceptions by level, and the last pass."""
    from dersync.cli.commands import do_status

    return await do_status(ctx.settings(), fmt)


@cli.command("redrive")
@click.option("--nmi", "nmis", multiple=True, help="Re-drive this NMI (repeatable).")
@click.option("--level", type=click.Choice(values(Level)), default=None,
              help="Re-drive every NMI with an exception of this level.")
@click.option("--code", default=None, help="... and this code (with --level).")
@click.option("--open", "open_only", is_flag=True, help="... only exceptions still open (with --level).")
@click.option("--preview", is_flag=True, help="List what would be re-driven; change nothing.")
@click.option("--expect", default=None, metavar="FINGERPRINT",
              help="Act only if the selection still holds exactly the NMIs a preview listed.")
@click.option("--reason", default=None, help="Why (kept in the action log, shown on each NMI's page).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def redrive_command(ctx: Context, nmis: tuple[str, ...], level: str | None, code: str | None, open_only: bool,
                          preview: bool, expect: str | None, reason: str | None, fmt: str) -> int:
    """Send records again at the next sync pass even though their content did not change.

    \b
      dersync redrive --nmi 8001000001 --nmi 8001000002
      dersync redrive --level second --code 2023 --open --preview
    """
    from dersync.cli.commands import do_redrive
    from dersync.console.forms import BadInput, exception_filter, nmi_value, reason_of
    from dersync.store import Selection

    if bool(nmis) == bool(level):
        raise click.UsageError("name the records: --nmi NMI (repeatable), or --level LEVEL [--code C] [--open]")
    if not level and (code or open_only):
        raise click.UsageError("--code and --open narrow --level; with --nmi they mean nothing")
    try:
        if nmis:
            selection = Selection(nmis=tuple(n for n in (nmi_value("--nmi", nmi) for nmi in nmis) if n))
        else:
            selection = Selection(filter=exception_filter(
                {"level": level, "code": code, "status": "open" if open_only else None}))
        checked = reason_of(reason, required=False)
    except BadInput as exc:
        raise click.UsageError(str(exc)) from None
    return await do_redrive(ctx.settings(), selection, preview=preview, reason=checked, expect=expect, fmt=fmt)


@cli.command("park")
@click.argument("nmi")
@click.option("--reason", required=True, help="Why (what is being fixed, and by whom).")
@run_async
async def park_command(ctx: Context, nmi: str, reason: str) -> int:
    """Stop sync passes sending this record until it is unparked (while a data fix is made)."""
    from dersync.cli.commands import do_park
    from dersync.console.forms import BadInput, nmi_value, reason_of

    try:
        named, checked = nmi_value("NMI", nmi), reason_of(reason, required=True)
    except BadInput as exc:
        raise click.UsageError(str(exc)) from None
    assert named is not None and checked is not None
    return await do_park(ctx.settings(), named, checked)


@cli.command("unpark")
@click.argument("nmi")
@click.option("--reason", default=None, help="Why (optional).")
@run_async
async def unpark_command(ctx: Context, nmi: str, reason: str | None) -> int:
    """Hand a parked record back to the sync passes."""
    from dersync.cli.commands import do_unpark
    from dersync.console.forms import BadInput, nmi_value, reason_of

    try:
        named, checked = nmi_value("NMI", nmi), reason_of(reason, required=False)
    except BadInput as exc:
        raise click.UsageError(str(exc)) from None
    assert named is not None
    return await do_unpark(ctx.settings(), named, checked)


@cli.group("admin")
def admin_group() -> None:
    """Console users (the operator console and its JSON API)."""


@admin_group.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(values(Role)), required=True,
              help="viewer reads; operator also re-drives, parks and unparks.")
@click.option("--password-stdin", "password_stdin", is_flag=True, required=True,
              help="Read the password from standard input (never from the command line).")
@run_async
async def add_user(ctx: Context, name: str, role: str, password_stdin: bool) -> int:
    """Create a console user, or change an existing one's role and password.

    \b
      dersync admin add-user alice --role operator --password-stdin < alice.secret
    """
    from dersync.cli.commands import do_add_user
    from dersync.console.passwords import name_problem, password_problem

    problem = name_problem(name)
    if problem is not None:
        raise click.UsageError(problem)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
    problem = password_problem(password)
    if problem is not None:
        raise click.UsageError(f"{problem} (read from standard input)")
    return await do_add_user(ctx.settings(), name, role, password)


@admin_group.command("list-users")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@run_async
async def list_users(ctx: Context, fmt: str) -> int:
    """Console users and their roles (never their passwords or hashes)."""
    from dersync.cli.commands import do_list_users

    return await do_list_users(ctx.settings(), fmt)


@admin_group.command("remove-user")
@click.argument("name")
@run_async
async def remove_user(ctx: Context, name: str) -> int:
    """Remove a console user; their sessions end at once."""
    from dersync.cli.commands import do_remove_user

    return await do_remove_user(ctx.settings(), name)


@cli.command("run")
@run_async
async def run_command(ctx: Context) -> int:
    """Run the daemon: scheduled sync and reconciliation, admin endpoints; stop with SIGTERM."""
    from dersync.daemon import Service
    from dersync.gc_tuning import settle_after_start_up

    service = Service(ctx.settings(events_on_stdout=True))
    settle_after_start_up()
    return await service.run()


@cli.command("mock-aemo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8085, show_default=True, type=int)
@click.option("--token-lifetime", default=3599, show_default=True, type=int, help="Seconds a token lives.")
@click.option("--rate-limit", default=6000, show_default=True, type=int, help="Requests per 60 s window.")
@click.option("--fault-rate", default=0.0, show_default=True, type=float, help="Share of API calls that fail.")
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds added to each answer.")
@click.option("--outage-after-requests", default=None, type=int,
              help="Answer 503 to every API call once this many have been admitted ...")
@click.option("--outage-seconds", default=0.0, show_default=True, type=float, help="... for this many seconds.")
@click.option("--state-file", default=None, type=click.Path(dir_okay=False), help="Keep the register in this file.")
@click.option("--response-shape", type=click.Choice(["wrapped", "bare"]), default="wrapped", show_default=True)
@run_async
async def mock_aemo(ctx: Context, host: str, port: int, token_lifetime: int, rate_limit: int,
                    fault_rate: float, latency: float, outage_after_requests: int | None, outage_seconds: float,
                    state_file: str | None, response_shape: str) -> int:
    """Run the project's AEMO simulator (OAuth, NMI and Installation APIs) for testing.

    It accepts client id dersync-demo with secret demo-secret, and any participant id (any
    non-empty X-initiatingParticipantID). Point dersync at it from another shell (with the
    --host and --port given here):

    \b
      export DERSYNC_OAUTH_TOKEN_URL=http://127.0.0.1:8085/oauth/v1/token
      export DERSYNC_NMI_API_URL=http://127.0.0.1:8085/wem/v1/der-register
      export DERSYNC_INSTALLATION_API_URL=http://127.0.0.1:8085/v2/der-register
      export DERSYNC_CLIENT_ID=dersync-demo DERSYNC_CLIENT_SECRET=demo-secret
      export DERSYNC_PARTICIPANT_ID=MYNSP
      dersync import records.jsonl && dersync sync
    """
    from dersync.gc_tuning import settle_after_start_up
    from dersync.mock import SimulatorConfig, serve_forever

    configure_logging(Settings(log_format=None))
    settle_after_start_up()
    config = SimulatorConfig(token_lifetime_seconds=token_lifetime, rate_limit_per_minute=rate_limit,
                             fault_rate=fault_rate, latency_seconds=latency, state_file=state_file,
                             response_shape=response_shape, outage_after_requests=outage_after_requests,
                             outage_seconds=outage_seconds)
    await serve_forever(config, host, port)
    return 0


@cli.command("demo")
@click.option("--records", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Import this file instead of the bundled sample records.")
@run_async
async def demo_command(ctx: Context, records: Path | None) -> int:
    """Run the main job end to end against the built-in AEMO simulator, with no configuration."""
    from dersync.cli.demo import run_demo

    return await run_demo(records)


def main() -> None:
    cli(prog_name="dersync")


if __name__ == "__main__":  # pragma: no cover
    main()
