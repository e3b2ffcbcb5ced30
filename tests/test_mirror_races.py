"""Changes on the parent reach a child node as ``meeting`` events, each mirrored in its own
task: mirrors of one meeting run one at a time, in the order received, never a database
error, and the child ends with the last version."""

from __future__ import annotations

import asyncio
from typing import Any

from server.cascade.parent_link import PARENT_LINK
from tests.conftest import Tree
from tests.live_helpers import schedule


async def test_parallel_mirrors_of_one_meeting_store_it_once_ending_with_the_last(
    tree: Tree,
) -> None:
    chair = await tree.province.login("chutri")
    mid = await schedule(chair, title="Giao ban", invited_subtrees=["CM-NC"])
    _status, body = await chair.call("GET", f"/api/meetings/{mid}")
    district = tree.districts["CM-NC"]
    link = district.app[PARENT_LINK]
    # As the parent announces them: a new meeting (an id the child has not seen yet), then
    # quick edits of it, arriving faster than the child stores them.
    summaries: list[dict[str, Any]] = [
        {**body["meeting"], "id": 4321, "title": f"Giao ban lần {i}"} for i in range(8)
    ]
    local_ids = await asyncio.gather(*(link.mirror(s) for s in summaries))
    assert len(set(local_ids)) == 1, local_ids

    operator = await district.login("kt.cm-nc-hr")
    status, listed = await operator.call("GET", "/api/meetings")
    assert status == 200, listed
    titles = [m["title"] for m in listed["meetings"] if m["title"].startswith("Giao ban lần")]
    assert titles == ["Giao ban lần 7"]
