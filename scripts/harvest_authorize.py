"""Install the Harvest integration from a terminal (a server with no browser next to it).

Same result as the Airflow UI's "Install Harvest" page: the ``harvest_default`` connection in Airflow's
metadata database holds the client id, secret, refresh token and account id. Run it where the
``airflow`` command works (same configuration and metadata database)::

    python scripts/harvest_authorize.py --client-id ID            # the secret is asked for (or $HARVEST_CLIENT_SECRET)

It prints Harvest's authorize URL; open it in any browser, sign in as a Harvest administrator, approve,
and paste the address Harvest sends the browser to (the page itself may fail to load: only its URL
matters), or just its ``code``. The redirect URL must be the one registered for the OAuth2 application
(default: this deployment's install page callback, from ``[api] base_url``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from primetric_harvest import oauth_install as install
from primetric_harvest.harvest_api import DEFAULT_BASE_URL, DEFAULT_ID_URL
from primetric_harvest.names import CALLBACK_PATH, HARVEST_CONN_ID
from primetric_harvest.oauth_tokens import HarvestOAuthError


def default_redirect_uri() -> str | None:
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").strip().rstrip("/")
    return f"{base}{CALLBACK_PATH}" if base else None


def choose(accounts: list[dict], wanted: str | None, ask) -> dict:
    if wanted:
        for account in accounts:
            if str(account["id"]) == str(wanted):
                return account
        raise HarvestOAuthError(f"Account {wanted} is not among those authorized: {[a['id'] for a in accounts]}.")
    if len(accounts) == 1:
        return accounts[0]
    for i, account in enumerate(accounts, 1):
        print(f"  {i}. {account.get('name', '')} ({account['id']})")
    answer = ask("Which Harvest account should the sync read? Number: ").strip()
    try:
        return accounts[int(answer) - 1]
    except (ValueError, IndexError):
        raise HarvestOAuthError(f"No account number {answer!r}.") from None


def main(argv: list[str] | None = None, ask=input) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", help="default: $HARVEST_CLIENT_SECRET, else asked without echo")
    parser.add_argument("--redirect-uri", help="the application's Redirect URL (default: from [api] base_url)")
    parser.add_argument("--account-id", help="the Harvest account to sync (asked when there are several)")
    parser.add_argument("--api-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--id-url", default=DEFAULT_ID_URL)
    parser.add_argument("--conn-id", default=HARVEST_CONN_ID)
    args = parser.parse_args(argv)
    secret = args.client_secret or os.environ.get("HARVEST_CLIENT_SECRET") or getpass.getpass("Client secret: ")
    redirect_uri = args.redirect_uri or default_redirect_uri()
    if not redirect_uri:
        parser.error("--redirect-uri is needed ([api] base_url is not set to derive it)")
    try:
        state = install.new_state()
        print("Open this URL in a browser, sign in to Harvest as an administrator and approve:\n")
        print("  " + install.authorization_url(args.client_id, redirect_uri, state, args.id_url) + "\n")
        pasted = ask("Paste the URL Harvest redirected to (or the code): ")
        code = install.parse_pasted(pasted, state)
        tokens = install.exchange_code(args.client_id, secret, code, redirect_uri, args.id_url)
        user, accounts = install.harvest_accounts(tokens.access_token, args.id_url)
        if not accounts:
            raise HarvestOAuthError(f"The Harvest user {user.get('email', '')} has no Harvest account.")
        if not tokens.refresh_token:
            raise HarvestOAuthError("Harvest sent no refresh token.")
        account = choose(accounts, args.account_id, ask)
        me = install.check_administrator(tokens.access_token, str(account["id"]), args.api_url)
        install.save_connection(
            args.conn_id,
            client_id=args.client_id,
            client_secret=secret,
            refresh_token=tokens.refresh_token,
            account_id=str(account["id"]),
            api_url=args.api_url,
            id_url=args.id_url,
            installed_by=f"{getpass.getuser()} (command line)",
        )
    except HarvestOAuthError as exc:
        print(f"Harvest was not installed: {exc}", file=sys.stderr)
        return 1
    print(
        f"The integration is properly installed: connection {args.conn_id!r}, Harvest account "
        f"{account.get('name', '')} ({account['id']}), authorized by {me.get('email', '')}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
