"""Web search backends for RAG (the paper used Google search, top-k 3): Google Programmable Search,
SerpAPI and Brave, through their HTTP APIs with ``httpx``.

API keys come only from environment variables (``api_key_env``); they are never logged, cached or
put in error messages. ``base_url`` points a backend at a proxy or, in tests, a local fake server.

Example (run config)::

    search:
      backend: google
      options: {api_key_env: GOOGLE_API_KEY, cx_env: GOOGLE_CSE_ID}
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from typing import Any, ClassVar

from mmat.errors import ConfigError, MissingDependencyError, ToolError
from mmat.tools.search import SearchBackend, SearchHit


class WebSearch(SearchBackend):
    """Shared HTTP handling; subclasses say how to build the request and read the response."""

    default_base_url: ClassVar[str] = ""
    default_key_env: ClassVar[str] = ""
    max_per_request: ClassVar[int] = 10

    def __init__(
        self,
        *,
        index: str | None = None,
        corpus: str | None = None,
        api_key_env: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 20.0,
        **params: Any,
    ) -> None:
        self.api_key_env = api_key_env or self.default_key_env
        self.base_url = base_url or self.default_base_url
        self.timeout_s = timeout_s
        self.params = params
        self._client: Any = None

    def api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"{self.name} search needs an API key in the environment variable {self.api_key_env}; "
                f"export {self.api_key_env}=... or pick search.backend: bm25 (offline)"
            )
        return key

    def request(self, query: str, k: int) -> tuple[dict[str, str], dict[str, str]]:
        """(query parameters, headers) of one search call."""
        raise NotImplementedError

    def parse(self, data: dict[str, Any]) -> list[SearchHit]:
        raise NotImplementedError

    async def asearch(self, query: str, k: int, pool: Executor | None = None) -> list[SearchHit]:
        try:
            import httpx
        except ImportError as error:
            raise MissingDependencyError("httpx", "search", error) from None
        params, headers = self.request(query, min(k, self.max_per_request))
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        try:
            response = await self._client.get(self.base_url, params=params, headers=headers)
        except httpx.HTTPError as error:
            # str(error) may hold the URL with the key in it: name only the error class
            raise ToolError(f"{self.name} search request failed ({type(error).__name__})") from None
        if response.status_code != 200:
            hint = {
                401: "check the API key",
                403: "check the API key and quota",
                429: "rate limited; retry later",
            }
            raise ToolError(
                f"{self.name} search answered HTTP {response.status_code}"
                + (f": {hint[response.status_code]}" if response.status_code in hint else "")
            )
        try:
            data = response.json()
        except ValueError:
            raise ToolError(f"{self.name} search answered with a body that is not JSON") from None
        if not isinstance(data, dict):
            raise ToolError(f"{self.name} search answered with JSON that is not an object")
        return self.parse(data)[:k]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class GoogleSearch(WebSearch):
    """Google Programmable Search Engine (Custom Search JSON API): key + search-engine id ``cx``."""

    name: ClassVar[str] = "google"
    version: ClassVar[str] = "google-cse-1"
    default_base_url: ClassVar[str] = "https://www.googleapis.com/customsearch/v1"
    default_key_env: ClassVar[str] = "GOOGLE_API_KEY"

    def request(self, query: str, k: int) -> tuple[dict[str, str], dict[str, str]]:
        cx = self.params.get("cx") or os.environ.get(str(self.params.get("cx_env", "GOOGLE_CSE_ID")), "")
        if not cx:
            raise ConfigError(
                "google search needs a search-engine id: set search.options.cx or GOOGLE_CSE_ID"
            )
        return {"key": self.api_key(), "cx": str(cx), "q": query, "num": str(k)}, {}

    def parse(self, data: dict[str, Any]) -> list[SearchHit]:
        return [
            SearchHit(
                title=_text(item.get("title")), text=_text(item.get("snippet")), url=_text(item.get("link"))
            )
            for item in data.get("items") or []
            if isinstance(item, dict)
        ]


class SerpApiSearch(WebSearch):
    """SerpAPI (Google results as JSON): ``organic_results`` with title, link, snippet."""

    name: ClassVar[str] = "serpapi"
    version: ClassVar[str] = "serpapi-1"
    default_base_url: ClassVar[str] = "https://serpapi.com/search.json"
    default_key_env: ClassVar[str] = "SERPAPI_API_KEY"

    def request(self, query: str, k: int) -> tuple[dict[str, str], dict[str, str]]:
        engine = str(self.params.get("engine", "google"))
        return {"engine": engine, "q": query, "num": str(k), "api_key": self.api_key()}, {}

    def parse(self, data: dict[str, Any]) -> list[SearchHit]:
        if data.get("error"):
            raise ToolError(f"serpapi search failed: {_text(data.get('error'))[:200]}")
        return [
            SearchHit(
                title=_text(item.get("title")), text=_text(item.get("snippet")), url=_text(item.get("link"))
            )
            for item in data.get("organic_results") or []
            if isinstance(item, dict)
        ]


class BraveSearch(WebSearch):
    """Brave Search API (``X-Subscription-Token`` header): ``web.results`` with title, url, description."""

    name: ClassVar[str] = "brave"
    version: ClassVar[str] = "brave-1"
    default_base_url: ClassVar[str] = "https://api.search.brave.com/res/v1/web/search"
    default_key_env: ClassVar[str] = "BRAVE_API_KEY"
    max_per_request: ClassVar[int] = 20

    def request(self, query: str, k: int) -> tuple[dict[str, str], dict[str, str]]:
        headers = {"Accept": "application/json", "X-Subscription-Token": self.api_key()}
        return {"q": query, "count": str(k)}, headers

    def parse(self, data: dict[str, Any]) -> list[SearchHit]:
        web = data.get("web") or {}
        return [
            SearchHit(
                title=_text(item.get("title")),
                text=_text(item.get("description")),
                url=_text(item.get("url")),
            )
            for item in (web.get("results") or [] if isinstance(web, dict) else [])
            if isinstance(item, dict)
        ]
