"""Vietnamese first, English second.

Templates and handlers write ``_("English text")``; this catalog gives the Vietnamese.
Two languages and a few hundred strings do not justify gettext's compile step and .mo files
in the repository, so the catalog is a dict; a test checks that every string the templates
use has a Vietnamese entry.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

LANGS = ("vi", "en")
LANG_COOKIE = "hoinghi_lang"

VI: dict[str, str] = {
    # chrome
    "hoinghi — multi-level online meetings": "hoinghi — hội nghị trực tuyến nhiều cấp",
    "Meetings": "Cuộc họp",
    "Units": "Đơn vị",
    "Users": "Người dùng",
    "Log out": "Đăng xuất",
    "Log in": "Đăng nhập",
    "Logged in as": "Đang đăng nhập",
    "Skip to content": "Bỏ qua, tới nội dung",
    # roles
    "admin": "quản trị viên",
    "chair": "chủ trì",
    "operator": "kỹ thuật viên điểm cầu",
    "secretary": "thư ký",
    # login
    "Username": "Tên đăng nhập",
    "Password": "Mật khẩu",
    "Log in to hoinghi": "Đăng nhập hệ thống hội nghị",
    "Use the account your administrator gave you.": "Dùng tài khoản do quản trị viên cấp cho bạn.",
    "You have logged out.": "Bạn đã đăng xuất.",
    # meetings
    "Schedule a meeting": "Lên lịch cuộc họp",
    "No meetings concern your unit yet.": "Chưa có cuộc họp nào liên quan đến đơn vị của bạn.",
    "Title": "Tiêu đề",
    "Description": "Nội dung",
    "Start": "Bắt đầu",
    "Start time": "Thời gian bắt đầu",
    "Duration (minutes)": "Thời lượng (phút)",
    "Host": "Đơn vị chủ trì",
    "Status": "Trạng thái",
    "Invited sites": "Điểm cầu được mời",
    "Invited units": "Đơn vị được mời",
    "scheduled": "đã lên lịch",
    "live": "đang họp",
    "ended": "đã kết thúc",
    "cancelled": "đã huỷ",
    "Edit": "Sửa",
    "Save": "Lưu",
    "Cancel meeting": "Huỷ cuộc họp",
    "Back": "Quay lại",
    "Open": "Xem",
    "Whole unit with all units below": "Cả đơn vị và các đơn vị trực thuộc",
    "This site only": "Chỉ điểm cầu này",
    "Choose whole districts at once, or single sites.": "Chọn cả huyện một lần, hoặc từng điểm cầu.",
    "The meeting has been scheduled.": "Đã lên lịch cuộc họp.",
    "The meeting has been saved.": "Đã lưu cuộc họp.",
    "The meeting has been cancelled.": "Đã huỷ cuộc họp.",
    "Cancel this meeting? Every invited site will see it as cancelled.": "Huỷ cuộc họp này? Mọi điểm cầu được mời sẽ thấy cuộc họp đã huỷ.",
    "sites": "điểm cầu",
    "Edit meeting": "Sửa cuộc họp",
    "Time zone": "Múi giờ",
    "Please correct the fields marked below.": "Vui lòng sửa các mục được đánh dấu bên dưới.",
    # units and users
    "Administrative units": "Đơn vị hành chính",
    "Code": "Mã",
    "Name": "Tên",
    "Level": "Cấp",
    "Parent unit": "Đơn vị cấp trên",
    "Add a unit": "Thêm đơn vị",
    "Add": "Thêm",
    "province": "tỉnh",
    "district": "huyện",
    "commune": "xã",
    "Full name": "Họ và tên",
    "Role": "Vai trò",
    "Unit": "Đơn vị",
    "Active": "Đang hoạt động",
    "Disabled": "Đã khoá",
    "Add a user": "Thêm người dùng",
    "Disable": "Khoá",
    "Enable": "Mở khoá",
    "New password": "Mật khẩu mới",
    "Set password": "Đặt mật khẩu",
    "The unit has been added.": "Đã thêm đơn vị.",
    "The user has been added.": "Đã thêm người dùng.",
    "The user has been updated.": "Đã cập nhật người dùng.",
    "At least 8 characters.": "Ít nhất 8 ký tự.",
    # errors
    "Something went wrong": "Đã có lỗi",
    "Go to the meeting list": "Về danh sách cuộc họp",
}

# Messages for error codes, shown on pages; API clients get the English message and the code.
ERRORS_VI: dict[str, str] = {
    "bad_credentials": "Sai tên đăng nhập hoặc mật khẩu.",
    "too_many_failures": "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {minutes} phút.",
    "csrf_failed": "Biểu mẫu đã hết hạn hoặc không đến từ trang này; vui lòng tải lại trang.",
    "forbidden": "Bạn không có quyền thực hiện thao tác này.",
    "not_authenticated": "Vui lòng đăng nhập.",
    "meeting_not_found": "Không tìm thấy cuộc họp.",
    "user_not_found": "Không tìm thấy người dùng.",
    "unit_not_found": "Không tìm thấy đơn vị.",
    "meeting_not_editable": "Cuộc họp không còn sửa được.",
    "invalid_field": "Dữ liệu chưa hợp lệ.",
    "duplicate": "Đã tồn tại.",
    "internal_error": "Lỗi hệ thống; lỗi đã được ghi lại.",
    "http_404": "Không tìm thấy trang.",
}


def request_lang(request: web.Request) -> str:
    lang = request.cookies.get(LANG_COOKIE)
    if lang in LANGS:
        return lang
    from server.state import ctx

    return ctx(request).settings.default_language


def translator(lang: str) -> Callable[[str], str]:
    if lang == "vi":
        return lambda text: VI.get(text, text)
    return lambda text: text


def error_text(lang: str, code: str, message: str, **values: str) -> str:
    if lang == "vi" and code in ERRORS_VI:
        try:
            return ERRORS_VI[code].format(**values)
        except KeyError:
            return ERRORS_VI[code]
    return message
