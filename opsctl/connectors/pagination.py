"""Paging through an operation's results: where each style finds the next page, and when it
stops (docs/connectors.md, ``pagination``).

A :class:`Pager` answers two questions: what to add to the first request, and, given a page
just read, what to ask for next (``None``: that was the last page). The page cap
(``max_pages``) is the executor's to enforce.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from opsctl.connectors.executor_http import RequestProblem, body_path, same_origin
from opsctl.connectors.model import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    OffsetPagination,
    PagePagination,
    Pagination,
)

_FALSE = (False, None, 0, "", "false", "False")


@dataclass(frozen=True)
class PageRequest:
    """What one page asks for: ``params`` set in the query or body, or a URL to ``follow``."""

    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    location: str = "query"
    follow: URL | None = None


@dataclass(frozen=True)
class PageSeen:
    """What the pager needs of a page it has read."""

    body: Any
    records: Sequence[Any]
    url: URL
    next_link: URL | None = None
    """The ``Link: <…>; rel="next"`` target, resolved against the page's URL."""


class Pager:
    """The paging state of one execution."""

    def __init__(
        self, pagination: Pagination, origin: URL, *, preset: Collection[str] = ()
    ) -> None:
        self.pagination = pagination
        self.origin = origin
        self.preset = frozenset(preset)
        """Parameters the operation sets itself: its own page size wins over the default."""
        self.max_pages = getattr(pagination, "max_pages", 1)
        self._cursor: Any = None
        self._offset = 0
        self._page = getattr(pagination, "start_page", 1)
        self._followed: URL | None = None

    def first(self) -> PageRequest:
        p = self.pagination
        if isinstance(p, OffsetPagination):
            return self._request({p.offset_param: 0})
        if isinstance(p, PagePagination):
            return self._request({p.page_param: self._page})
        return self._request({})

    def next(self, page: PageSeen) -> PageRequest | None:
        p = self.pagination
        if isinstance(p, CursorPagination):
            return self._next_cursor(p, page)
        if isinstance(p, OffsetPagination):
            if len(page.records) < p.page_size:
                return None
            self._offset += p.page_size
            if p.total_path is not None:
                total = body_path(page.body, p.total_path)
                if isinstance(total, int | float) and self._offset >= total:
                    return None
            return self._request({p.offset_param: self._offset})
        if isinstance(p, PagePagination):
            if not page.records:
                return None
            self._page += 1
            return self._request({p.page_param: self._page})
        if isinstance(p, LinkHeaderPagination):
            return self._follow(page.next_link)
        if isinstance(p, NextUrlPagination):
            target = body_path(page.body, p.next_url_path)
            if not isinstance(target, str) or not target.strip():
                return None
            try:
                url = self.origin.join(URL(target.strip()))
            except ValueError:
                raise RequestProblem(
                    "bad_response", f"the next-page URL at {p.next_url_path} is not a URL"
                ) from None
            return self._follow(url)
        return None

    def _next_cursor(self, p: CursorPagination, page: PageSeen) -> PageRequest | None:
        if p.has_more_path is not None and body_path(page.body, p.has_more_path) in _FALSE:
            return None
        if p.cursor_path is not None:
            cursor = body_path(page.body, p.cursor_path)
        elif page.records and isinstance(page.records[-1], dict) and p.cursor_record_field:
            cursor = page.records[-1].get(p.cursor_record_field)
        else:
            cursor = None
        if cursor in _FALSE or isinstance(cursor, dict | list) or cursor == self._cursor:
            return None  # no cursor, or the one just sent: the vendor has nothing further
        self._cursor = cursor
        return self._request({p.cursor_param: cursor})

    def _follow(self, url: URL | None) -> PageRequest | None:
        if url is None or url == self._followed:
            return None
        if not same_origin(url, self.origin):
            raise RequestProblem(
                "bad_response",
                f"the next page is on another host ({url.scheme}://{url.host}); "
                "credentials are only sent to the connector's base URL",
            )
        self._followed = url
        return PageRequest(follow=url)

    def _request(self, params: Mapping[str, Any]) -> PageRequest:
        p = self.pagination
        size_param = getattr(p, "size_param", None)
        page_size = getattr(p, "page_size", None)
        if size_param and page_size is not None and size_param not in self.preset:
            params = {size_param: page_size, **params}
        return PageRequest(params, getattr(p, "location", "query"))
