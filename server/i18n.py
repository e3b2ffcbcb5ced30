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
    "This meeting is run by the level above; changes to it are made there.": "Cuộc họp này do cấp trên tổ chức; mọi thay đổi được thực hiện ở hệ thống của cấp trên.",
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
    "Unlock login": "Mở khoá đăng nhập",
    "{count} failed logins": "{count} lần đăng nhập sai",
    "The login has been unlocked.": "Đã mở khoá đăng nhập.",
    "At least 8 characters.": "Ít nhất 8 ký tự.",
    # live meeting (templates and server/http/live_pages.py LIVE_STRINGS)
    "Join the meeting": "Vào phòng họp",
    "Chair console": "Bàn điều khiển chủ trì",
    "Chair": "Chủ trì",
    "Your camera": "Camera của bạn",
    "Turn on sound": "Bật âm thanh",
    "Leave the meeting room": "Rời phòng họp",
    "Back to the meeting": "Về trang cuộc họp",
    "Start the meeting": "Bắt đầu họp",
    "End the meeting": "Kết thúc họp",
    "Sites on the wall": "Điểm cầu đang xem",
    "Raised hands": "Xin phát biểu",
    "Connected sites": "Điểm cầu đã kết nối",
    "Connecting…": "Đang kết nối…",
    "Connection lost — reconnecting…": "Mất kết nối — đang kết nối lại…",
    "Lost the connection to the server — reconnecting…": (
        "Mất kết nối tới máy chủ — đang kết nối lại…"
    ),
    "Connected": "Đã kết nối",
    "Connecting sound and picture…": "Đang kết nối âm thanh và hình ảnh…",
    "Your login has expired. Please log in again.": "Phiên đăng nhập đã hết hạn. Vui lòng đăng nhập lại.",
    "Your login session has ended": "Phiên đăng nhập đã kết thúc",
    "You logged out in another window.": "Bạn đã đăng xuất ở một cửa sổ khác.",
    "Your login session has expired.": "Phiên đăng nhập đã hết hạn.",
    "Your account has been locked by an administrator.": "Tài khoản đã bị khoá bởi quản trị viên.",
    "Your password has been changed.": "Mật khẩu đã được đổi.",
    "The role or unit of your account has changed.": "Vai trò hoặc đơn vị của tài khoản đã thay đổi.",
    "Log in again": "Đăng nhập lại",
    "Waiting for the chair to start the meeting": "Đang chờ chủ trì bắt đầu cuộc họp",
    "Not started yet — press “Start the meeting” when ready": "Chưa bắt đầu — bấm “Bắt đầu họp” khi sẵn sàng",
    "The meeting is in session": "Cuộc họp đang diễn ra",
    "The chair is not connected yet": "Chủ trì chưa kết nối",
    "The meeting has ended": "Cuộc họp đã kết thúc",
    "Thank you for attending. You may close this page.": "Xin cảm ơn quý đại biểu đã tham dự. Có thể đóng trang này.",
    "This meeting is not open: it has ended or was cancelled.": "Cuộc họp này không mở: đã kết thúc hoặc đã bị huỷ.",
    "This site was opened in another window": "Điểm cầu đã được mở ở cửa sổ khác",
    "Another window or device joined the meeting for this site, so this one stopped.": "Một cửa sổ hoặc thiết bị khác đã vào phòng họp cho điểm cầu này, nên cửa sổ này đã dừng.",
    "Use this window": "Dùng cửa sổ này",
    "Could not join the meeting": "Không vào được phòng họp",
    "This browser cannot join online meetings. Use a recent Chrome, Edge, Firefox or Safari.": "Trình duyệt này không dự họp trực tuyến được. Hãy dùng Chrome, Edge, Firefox hoặc Safari bản mới.",
    "No camera or microphone found: others cannot see or hear this site.": "Không tìm thấy camera và micro: nơi khác sẽ không thấy, không nghe được điểm cầu này.",
    "No camera found: others cannot see this site.": "Không tìm thấy camera: nơi khác sẽ không thấy điểm cầu này.",
    "No microphone found: others cannot hear this site.": "Không tìm thấy micro: nơi khác sẽ không nghe được điểm cầu này.",
    "The camera and microphone are blocked. Allow them in the browser, then reload the page.": "Camera và micro đang bị chặn. Hãy cho phép trong trình duyệt rồi tải lại trang.",
    "The browser blocked the sound. Press “Turn on sound”.": "Trình duyệt đang chặn âm thanh. Hãy bấm “Bật âm thanh”.",
    "Speaking: {name}": "Đang phát biểu: {name}",
    "You have the floor — please speak": "Điểm cầu của bạn được trao lời — mời phát biểu",
    "The chair has muted your site": "Chủ trì đã tắt tiếng điểm cầu của bạn",
    "Hand raised — waiting for the chair": "Đã giơ tay — đang chờ chủ trì trao lời",
    "Raise hand to speak": "Giơ tay xin phát biểu",
    "Lower hand": "Hạ tay",
    "Turn microphone off": "Tắt micro",
    "Turn microphone on": "Bật micro",
    "Turn camera off": "Tắt camera",
    "Turn camera on": "Bật camera",
    "Connected sites ({count})": "Điểm cầu đã kết nối ({count})",
    "No site has connected yet.": "Chưa có điểm cầu nào kết nối.",
    "Raised hands ({count})": "Xin phát biểu ({count})",
    "No raised hands.": "Chưa có điểm cầu nào xin phát biểu.",
    "Watch": "Xem",
    "Stop watching": "Bỏ xem",
    "Give the floor": "Trao lời",
    "Take back the floor": "Thu hồi lời",
    "Mute": "Tắt tiếng",
    "Unmute": "Bật tiếng",
    "Nobody has the floor": "Chưa trao lời cho điểm cầu nào",
    "Press “Give the floor” next to a site to let it speak": "Bấm “Trao lời” ở một điểm cầu để điểm cầu đó phát biểu",
    "Empty — press “Watch” next to a site": "Trống — bấm “Xem” ở một điểm cầu",
    "hand raised": "giơ tay",
    "muted": "đã tắt tiếng",
    "mic off": "tắt micro",
    "camera off": "tắt camera",
    "no picture yet": "chưa có hình",
    "speaking": "đang phát biểu",
    "End the meeting for every site?": "Kết thúc cuộc họp cho tất cả các điểm cầu?",
    "Could not do that: {message}": "Không thực hiện được: {message}",
    "Four sites are already watched; stop watching one first.": "Đã xem đủ 4 điểm cầu; hãy bỏ xem một điểm cầu trước.",
    "That site is no longer connected.": "Điểm cầu này không còn kết nối.",
    "The node did not answer in time.": "Máy chủ không trả lời kịp.",
    "Not connected to the node.": "Chưa kết nối được với máy chủ.",
    # the cascade on the live pages
    "Level above: connected": "Cấp trên: đã kết nối",
    "Level above: connection lost": "Cấp trên: mất kết nối",
    "Lost the connection to the level above ({host})": "Mất kết nối với cấp trên ({host})",
    "The meeting here goes on. The system is reconnecting by itself: keep this page open, the chair's picture and sound will come back on their own.": "Hội nghị tại đơn vị vẫn tiếp tục. Hệ thống đang tự động kết nối lại: xin giữ nguyên trang này, hình ảnh và âm thanh của chủ trì sẽ tự trở lại.",
    "Connected to the level above again": "Đã kết nối lại với cấp trên",
    "Level above: connecting": "Cấp trên: đang kết nối",
    "Level above: link refused": "Cấp trên: từ chối kết nối",
    "The level above ({host}) refused this node's link": "Cấp trên ({host}) đã từ chối kết nối của máy chủ này",
    "The meeting here goes on, without the chair's picture and sound. The node's administrator must check its node credential and units; please tell them.": "Hội nghị tại đơn vị vẫn tiếp tục nhưng không có hình ảnh và âm thanh của chủ trì. Quản trị viên máy chủ cần kiểm tra mã xác thực và danh sách đơn vị của máy chủ này; xin báo ngay cho quản trị viên.",
    "The chair's picture and sound are coming back.": "Hình ảnh và âm thanh của chủ trì đang trở lại.",
    "Waiting for the picture from the level above…": "Đang chờ tín hiệu hình ảnh từ cấp trên…",
    "Online": "Trực tuyến",
    "Connecting": "Đang kết nối",
    "Reconnecting": "Đang kết nối lại",
    "Offline": "Mất kết nối",
    "{count} offline": "{count} mất kết nối",
    "Sites connected directly": "Điểm cầu kết nối trực tiếp",
    "Node of the level below": "Điểm cầu cấp dưới",
    "Link OK": "Đường truyền tốt",
    "Link lost": "Mất đường truyền",
    "Sites through {name} are cut off for now; they come back by themselves when the link returns.": "Các điểm cầu qua {name} đang tạm mất kết nối; sẽ tự trở lại khi đường truyền phục hồi.",
    "{online} of {total} sites online": "{online}/{total} điểm cầu trực tuyến",
    "No site has connected through this node yet.": "Chưa có điểm cầu nào kết nối qua đây.",
    "{name} — offline": "{name} — mất kết nối",
    # the right door (server/cascade/doors.py)
    "Please use your own node": "Vui lòng dùng nút của đơn vị bạn",
    "Your site ({unit}) is served by the node of {node}. Please open:": "Điểm cầu của bạn ({unit}) được phục vụ bởi nút {node}. Vui lòng mở:",
    "Your site ({unit}) is served by the node of the level above. Please open:": "Điểm cầu của bạn ({unit}) được phục vụ bởi nút cấp trên. Vui lòng mở:",
    # errors
    "Something went wrong": "Đã có lỗi",
    "Go to the meeting list": "Về danh sách cuộc họp",
    # field errors (server/text.py), shown next to the field on the form pages
    "must not contain line breaks, tabs or control characters": "không được chứa ký tự xuống dòng, tab hay ký tự điều khiển",
    "must not contain control characters": "không được chứa ký tự điều khiển",
}

# Messages for error codes, shown on pages; API clients get the English message and the code.
ERRORS_VI: dict[str, str] = {
    "bad_credentials": "Sai tên đăng nhập hoặc mật khẩu.",
    "too_many_failures": "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {wait}.",
    "csrf_failed": "Biểu mẫu đã hết hạn hoặc không đến từ trang này; vui lòng tải lại trang.",
    "forbidden": "Bạn không có quyền thực hiện thao tác này.",
    "not_authenticated": "Vui lòng đăng nhập.",
    "meeting_not_found": "Không tìm thấy cuộc họp.",
    "user_not_found": "Không tìm thấy người dùng.",
    "unit_not_found": "Không tìm thấy đơn vị.",
    "meeting_not_editable": "Cuộc họp không còn sửa được.",
    "meeting_mirrored": "Cuộc họp này do cấp trên tổ chức; vui lòng thay đổi ở hệ thống của cấp trên.",
    "invalid_field": "Dữ liệu chưa hợp lệ.",
    "duplicate": "Đã tồn tại.",
    "conflict": "Có thay đổi khác cùng lúc; vui lòng tải lại trang và thử lại.",
    "internal_error": "Lỗi hệ thống; lỗi đã được ghi lại.",
    "http_404": "Không tìm thấy trang.",
    "not_invited": "Đơn vị của bạn không được mời dự cuộc họp này.",
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
