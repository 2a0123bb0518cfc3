"""The customer card page (HTML): its routers, one per part, which
`create_app` includes after the JSON API's.

The routers only translate: query parameters and form fields into the
service layer's requests (`services/`), its answers into `page_view`'s
templates, its errors into a notice on the page.

- `page_search`: `/` and the customer search, `GET /customers?q=`;
- `page_card`: the card, `GET /customers/{customer_id}`, and `/static/*`;
- `page_subjects`: one order's history, `GET /customers/{id}/orders/{order_id}`,
  and one dialogue, `GET /customers/{id}/chats/{dialog_id}`;
- `page_tasks`: the task buttons' and the edit form's posts;
- `page_adding`: the "Add note" and "Add task" forms' posts;
- `page_duplicates`: a customer's possible duplicates, `GET
  /customers/{id}/duplicates`, and its "Not a duplicate" forms' posts;
- `page_merging`: the merge preview, `GET /customers/{id}/merge?absorb=`, its
  form's post, the card's "Undo merge" forms' posts, and the 303 from a merged
  customer's pages to its priority customer's;
- `page_flash`: what the page says after a form, refusals included;
- `page_signin`: `/signin` and `/signout`. With an access file, a browser
  signs in once with an access key and gets the session cookie of
  `page_session`. Without one (open mode, loopback only) nothing is asked
  and the page acts as the user `ledger serve --user` names (LEDGER_PAGE_USER;
  `state.OPEN_MODE_USER`, "local", by default);
- `page_common`: the visitor (`Who`), the request (`Visit`) and form parsing
  the others share; `page_view`: rendering.
"""

from __future__ import annotations

from fastapi import APIRouter

from api import (
    page_adding,
    page_card,
    page_duplicates,
    page_merging,
    page_search,
    page_signin,
    page_subjects,
    page_tasks,
)
from api.page_view import customer_path

ROUTERS: tuple[APIRouter, ...] = (
    page_search.router,
    page_card.router,
    page_subjects.router,
    page_tasks.router,
    page_adding.router,
    page_duplicates.router,
    page_merging.router,
    page_signin.router,
)


def card_url(base: str, customer_id: str) -> str:
    """The page of one customer, for messages such as `ledger demo`'s."""
    return base.rstrip("/") + customer_path(customer_id)
