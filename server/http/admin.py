"""Unit and user administration, as pages and JSON API, scoped to the admin's subtree."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from server import auth, login_limit
from server.atomic import atomic
from server.errors import (
    AppError,
    field_errors,
    forbidden,
    invalid,
    not_found,
    path_id,
    read_json,
)
from server.http.api import ok
from server.http.rendering import render
from server.models import Role, Unit, User
from server.state import NodeContext, ctx
from server.text import Line
from server.units import CODE_RE, LEVEL_RE

routes = web.RouteTableDef()

USERNAME_RE = r"^[a-z0-9][a-z0-9_.-]{1,63}$"


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: Line = Field(pattern=CODE_RE)
    name: Line = Field(min_length=1, max_length=200)
    level: Line = Field(pattern=LEVEL_RE)
    parent: Line = Field(min_length=1, max_length=64)


class UnitPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Line = Field(min_length=1, max_length=200)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    username: Line = Field(pattern=USERNAME_RE)
    full_name: Line = Field(min_length=1, max_length=200)
    role: Role
    unit: Line = Field(min_length=1, max_length=64)
    # A new password: refused with a control character (a login with one fails as wrong).
    password: Line = Field(min_length=8, max_length=256)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    full_name: Line | None = Field(None, min_length=1, max_length=200)
    role: Role | None = None
    unit: Line | None = Field(None, min_length=1, max_length=64)
    active: bool | None = None
    password: Line | None = Field(None, min_length=8, max_length=256)


def _unit_in_scope(node: NodeContext, admin: auth.CurrentUser, code: str, field: str) -> int:
    info = node.units.by_code.get(code)
    if info is None:
        raise invalid({field: f"unknown unit {code!r}"})
    if not node.units.in_subtree(info.id, admin.unit_id):
        raise invalid({field: f"unit {code!r} is outside your unit"})
    return info.id


def unit_json(node: NodeContext, unit_id: int) -> dict[str, Any]:
    info = node.units.get(unit_id)
    parent = node.units.by_id.get(info.parent_id) if info.parent_id is not None else None
    return {
        "code": info.code,
        "name": info.name,
        "level": info.level,
        "parent": parent.code if parent else None,
    }


def user_json(node: NodeContext, user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "full_name": user.full_name,
        "role": user.role.value,
        "unit": node.units.get(user.unit_id).code,
        "active": user.active,
    }


# -- operations shared by pages and API --------------------------------------------------------


async def add_unit(node: NodeContext, admin: auth.CurrentUser, data: UnitIn) -> int:
    parent_id = _unit_in_scope(node, admin, data.parent, "parent")
    if data.code in node.units.by_code:
        raise AppError(
            409, "duplicate", f"A unit with code {data.code!r} exists.", {"code": "already exists"}
        )
    async with atomic(node.sessionmaker) as db:
        unit = Unit(code=data.code, name=data.name, level=data.level, parent_id=parent_id)
        db.add(unit)
        try:
            await db.flush()
        except IntegrityError as exc:
            raise AppError(
                409,
                "duplicate",
                f"A unit with code {data.code!r} exists.",
                {"code": "already exists"},
            ) from exc
        unit_id = unit.id
    await node.reload_units()
    return unit_id


async def _scoped_user(
    db: AsyncSession, node: NodeContext, admin: auth.CurrentUser, user_id: int
) -> User:
    user = await db.get(User, user_id)
    if user is None or not node.units.in_subtree(user.unit_id, admin.unit_id):
        raise not_found("user")
    return user


def _username_taken(username: str) -> AppError:
    return AppError(
        409, "duplicate", f"The username {username!r} is taken.", {"username": "already taken"}
    )


async def add_user(node: NodeContext, admin: auth.CurrentUser, data: UserIn) -> User:
    unit_id = _unit_in_scope(node, admin, data.unit, "unit")
    password_hash = await auth.hash_password(node, data.password)
    async with atomic(node.sessionmaker) as db:
        exists = await db.execute(select(User.id).where(User.username == data.username))
        if exists.first() is not None:
            raise _username_taken(data.username)
        user = User(
            username=data.username,
            full_name=data.full_name,
            role=data.role,
            unit_id=unit_id,
            password_hash=password_hash,
            active=True,
        )
        db.add(user)
        try:
            await db.flush()
        except IntegrityError as exc:  # a parallel request took the name after the check
            raise _username_taken(data.username) from exc
    return user


async def change_user(
    node: NodeContext, admin: auth.CurrentUser, user_id: int, patch: UserPatch
) -> User:
    new_hash = await auth.hash_password(node, patch.password) if patch.password else None
    end_sessions = False
    async with node.sessionmaker() as db, db.begin():
        user = await _scoped_user(db, node, admin, user_id)
        if user.id == admin.id and (
            patch.active is False or (patch.role is not None and patch.role is not Role.ADMIN)
        ):
            raise forbidden("You cannot disable your own account or drop your own admin role.")
        if patch.full_name is not None:
            user.full_name = patch.full_name
        if patch.role is not None:
            user.role = patch.role
            end_sessions = True
        if patch.unit is not None:
            user.unit_id = _unit_in_scope(node, admin, patch.unit, "unit")
            end_sessions = True
        if patch.active is not None:
            user.active = patch.active
            end_sessions = end_sessions or not patch.active
        if new_hash is not None:
            user.password_hash = new_hash
            end_sessions = True
    if end_sessions and user.id != admin.id:
        await auth.end_user_sessions(node, user.id)
    node.sessions_changed()  # the user's sockets are re-checked against the change at once
    return user


async def unlock_user(node: NodeContext, admin: auth.CurrentUser, user_id: int) -> User:
    """Forget every failed login of a user in the admin's subtree (404 outside it)."""
    async with atomic(node.sessionmaker) as db:
        user = await _scoped_user(db, node, admin, user_id)
        await login_limit.unlock(db, user.username)
    return user


async def users_in_scope(node: NodeContext, admin: auth.CurrentUser) -> list[User]:
    scope = node.units.subtree_ids(admin.unit_id)
    async with node.sessionmaker() as db:
        rows = await db.execute(select(User).where(User.unit_id.in_(scope)).order_by(User.username))
        return list(rows.scalars().all())


# -- API ---------------------------------------------------------------------------------------


@routes.get("/api/units")
async def api_units(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    return ok(
        units=[
            unit_json(node, info.id) | {"depth": depth}
            for info, depth in node.units.walk(user.unit_id)
        ]
    )


@routes.post("/api/units")
async def api_unit_add(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    data = await read_json(request, UnitIn)
    node = ctx(request)
    unit_id = await add_unit(node, admin, data)
    return ok(201, unit=unit_json(node, unit_id))


@routes.patch("/api/units/{code}")
async def api_unit_rename(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    data = await read_json(request, UnitPatch)
    node = ctx(request)
    info = node.units.by_code.get(request.match_info["code"])
    if info is None or not node.units.in_subtree(info.id, admin.unit_id):
        raise not_found("unit")
    async with node.sessionmaker() as db, db.begin():
        unit = await db.get(Unit, info.id)
        if unit is None:
            raise not_found("unit")
        unit.name = data.name
    await node.reload_units()
    return ok(unit=unit_json(node, info.id))


@routes.get("/api/users")
async def api_users(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    node = ctx(request)
    users = await users_in_scope(node, admin)
    failed = await login_limit.recent_failures(node, (u.username for u in users))
    return ok(
        users=[user_json(node, u) | {"failed_logins": failed.get(u.username, 0)} for u in users]
    )


@routes.post("/api/users")
async def api_user_add(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    data = await read_json(request, UserIn)
    node = ctx(request)
    user = await add_user(node, admin, data)
    return ok(201, user=user_json(node, user))


def _user_id(request: web.Request) -> int:
    return path_id(request, "user_id", "user")


@routes.patch("/api/users/{user_id}")
async def api_user_change(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    data = await read_json(request, UserPatch)
    node = ctx(request)
    user = await change_user(node, admin, _user_id(request), data)
    return ok(user=user_json(node, user))


@routes.post("/api/users/{user_id}/unlock")
async def api_user_unlock(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    node = ctx(request)
    user = await unlock_user(node, admin, _user_id(request))
    return ok(user=user_json(node, user) | {"failed_logins": 0})


# -- pages -------------------------------------------------------------------------------------


def _units_page(
    request: web.Request,
    admin: auth.CurrentUser,
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    node = ctx(request)
    rows = [{"unit": info, "depth": depth} for info, depth in node.units.walk(admin.unit_id)]
    return render(
        request, "units.html", status=status, rows=rows, values=values or {}, errors=errors or {}
    )


@routes.get("/admin/units", name="admin_units")
async def units_page(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    return _units_page(request, admin)


@routes.post("/admin/units")
async def units_add(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in ("code", "name", "level", "parent")}
    try:
        await add_unit(ctx(request), admin, UnitIn.model_validate(values))
    except ValidationError as exc:
        return _units_page(request, admin, 400, values, field_errors(exc))
    except AppError as err:
        if err.status not in (400, 409):
            raise
        return _units_page(request, admin, err.status, values, err.fields)
    raise web.HTTPSeeOther("/admin/units?flash=unit_added")


async def _users_page(
    request: web.Request,
    admin: auth.CurrentUser,
    users: list[User],
    status: int = 200,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> web.Response:
    node = ctx(request)
    units = [{"unit": info, "depth": depth} for info, depth in node.units.walk(admin.unit_id)]
    failed = await login_limit.recent_failures(node, (u.username for u in users))
    return render(
        request,
        "users.html",
        status=status,
        users=users,
        failed_logins=failed,
        units=units,
        unit_of=lambda u: node.units.by_id.get(u.unit_id),
        roles=list(Role),
        values=values or {},
        errors=errors or {},
    )


@routes.get("/admin/users", name="admin_users")
async def users_page(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    return await _users_page(request, admin, await users_in_scope(ctx(request), admin))


@routes.post("/admin/users")
async def users_add(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    node = ctx(request)
    form = await request.post()
    values = {
        k: str(form.get(k, "")) for k in ("username", "full_name", "role", "unit", "password")
    }
    try:
        await add_user(node, admin, UserIn.model_validate(values))
    except ValidationError as exc:
        values.pop("password")
        return await _users_page(
            request, admin, await users_in_scope(node, admin), 400, values, field_errors(exc)
        )
    except AppError as err:
        if err.status not in (400, 409):
            raise
        values.pop("password")
        return await _users_page(
            request, admin, await users_in_scope(node, admin), err.status, values, err.fields
        )
    raise web.HTTPSeeOther("/admin/users?flash=user_added")


@routes.post("/admin/users/{user_id}/unlock", name="admin_user_unlock")
async def users_unlock(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    await unlock_user(ctx(request), admin, _user_id(request))
    raise web.HTTPSeeOther("/admin/users?flash=user_unlocked")


@routes.post("/admin/users/{user_id}", name="admin_user")
async def users_change(request: web.Request) -> web.StreamResponse:
    admin = auth.require_user(request, roles=[Role.ADMIN])
    node = ctx(request)
    form = await request.post()
    raw: dict[str, Any] = {}
    if form.get("active") in ("0", "1"):
        raw["active"] = form.get("active") == "1"
    if form.get("password"):
        raw["password"] = str(form.get("password"))
    try:
        patch = UserPatch.model_validate(raw)
    except ValidationError as exc:
        return await _users_page(
            request, admin, await users_in_scope(node, admin), 400, {}, field_errors(exc)
        )
    await change_user(node, admin, _user_id(request), patch)
    raise web.HTTPSeeOther("/admin/users?flash=user_updated")
