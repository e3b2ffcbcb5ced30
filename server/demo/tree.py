"""Demo data: Cà Mau province (three districts with all their communes) and demo accounts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from server import auth
from server.models import Role, Unit, User
from server.state import NodeContext
from server.units import load_units, parse_unit_file

DEMO_UNITS = Path(__file__).resolve().parent.parent / "data" / "camau-2018-units.json"
DEMO_PASSWORD = "hoinghi-demo"


@dataclass(frozen=True)
class DemoAccount:
    username: str
    full_name: str
    role: Role
    unit: str


def demo_accounts() -> list[DemoAccount]:
    """Province staff, a chair and operator per district, an operator per commune."""
    accounts = [
        DemoAccount("quantri", "Quản trị hệ thống tỉnh", Role.ADMIN, "CM"),
        DemoAccount("chutri", "Chủ trì UBND tỉnh Cà Mau", Role.CHAIR, "CM"),
        DemoAccount("thuky", "Thư ký Văn phòng UBND tỉnh", Role.SECRETARY, "CM"),
    ]
    for entry in parse_unit_file(DEMO_UNITS):
        slug = entry.code.lower()
        if entry.level == "district":
            accounts.append(
                DemoAccount(f"chutri.{slug}", f"Chủ trì {entry.name}", Role.CHAIR, entry.code)
            )
            accounts.append(
                DemoAccount(f"thuky.{slug}", f"Thư ký {entry.name}", Role.SECRETARY, entry.code)
            )
        if entry.level in ("district", "commune"):
            accounts.append(
                DemoAccount(
                    f"kt.{slug}", f"Kỹ thuật điểm cầu {entry.name}", Role.OPERATOR, entry.code
                )
            )
    return accounts


def commune_operators(district: str) -> list[str]:
    """The demo operator account of every commune directly under ``district``."""
    return [
        f"kt.{entry.code.lower()}"
        for entry in parse_unit_file(DEMO_UNITS)
        if entry.level == "commune" and entry.parent == district
    ]


async def seed_demo(node: NodeContext) -> bool:
    """Load the demo tree and accounts into an empty database. False if it was not empty."""
    async with node.sessionmaker() as db:
        units = (await db.execute(select(func.count()).select_from(Unit))).scalar_one()
        users = (await db.execute(select(func.count()).select_from(User))).scalar_one()
    if units or users:
        return False
    entries = parse_unit_file(DEMO_UNITS)
    password_hash = await auth.hash_password(node, DEMO_PASSWORD)
    async with node.sessionmaker() as db, db.begin():
        await load_units(db, entries)
        codes = {u.code: u.id for u in (await db.execute(select(Unit))).scalars()}
        for acc in demo_accounts():
            db.add(
                User(
                    username=acc.username,
                    full_name=acc.full_name,
                    role=acc.role,
                    unit_id=codes[acc.unit],
                    password_hash=password_hash,
                    active=True,
                )
            )
    await node.reload_units()
    return True


def demo_logins_text(url: str) -> str:
    lines = [
        f"Open {url} and log in with password '{DEMO_PASSWORD}' as:",
        "  quantri          administrator (Tỉnh Cà Mau)",
        "  chutri           chair, Tỉnh Cà Mau: schedules province meetings",
        "  thuky            secretary, Tỉnh Cà Mau",
        "  chutri.cm-nc     chair, Huyện Năm Căn (likewise chutri.cm-nh, chutri.cm-tvt)",
        "  thuky.cm-nc      secretary, Huyện Năm Căn (likewise thuky.cm-nh, thuky.cm-tvt)",
        "  kt.cm-nc         operator of the Huyện Năm Căn hall",
        "  kt.cm-nc-hr      operator of Xã Hàm Rồng (Năm Căn)",
        "  kt.cm-tvt-kb     operator of Xã Khánh Bình (Trần Văn Thời)",
        "  (every district and commune has an operator: kt.<unit code in lower case>)",
    ]
    return "\n".join(lines)
