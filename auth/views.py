"""Login/logout pages and the identity API (me, personal tokens, users)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_smorest import Blueprint

from auth import service
from auth.access import roles_required
from auth.forms import LoginForm
from auth.models import ApiToken, User
from auth.roles import ADMIN, STAFF_ROLES
from auth.schemas import (
    IssuedTokenSchema,
    MeSchema,
    TokenCreateSchema,
    TokenSchema,
    UserCreateSchema,
    UserSchema,
)
from common.extensions import db, limiter
from common.pagination import paginate
from common.schemas import schema_values

bp = FlaskBlueprint("auth", __name__)
api_bp = Blueprint("identity", __name__, url_prefix="/api/v1", description="Users and API tokens")


def _safe_next(target: str | None) -> str:
    # Only same-site relative paths: never an open redirect. Browsers drop tab, CR and LF from
    # URLs ("/\t/evil.example" becomes "//evil.example"), and CR/LF would split the header.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target)):
        return target
    return url_for("core.index")


def _login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login() -> Any:
    """Staff and partner-portal sign-in."""
    form = LoginForm()
    if form.validate_on_submit():
        user = service.check_credentials(
            form.email.data, form.password.data, current_app.config["PASSWORD_HASH_PROFILE"]
        )
        if user is None:
            flash("Wrong email or password.", "error")
            return render_template("auth/login.html", form=form), 401
        if current_user.is_authenticated and getattr(current_user, "session_token", None):
            service.end_login_session(current_user.session_token)
        session.clear()  # a new session on every login: no fixation
        service.start_login_session(
            user=user, ip_address=request.remote_addr, user_agent=request.user_agent.string
        )
        login_user(user)
        session.permanent = True
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    """End the session server-side, so a replayed cookie is refused."""
    service.end_login_session(current_user.session_token)
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@api_bp.route("/me")
@roles_required()
@api_bp.response(200, MeSchema)
def me() -> Any:
    """Who the bearer credentials belong to."""
    return {
        "role": current_user.role,
        "email": current_user.email,
        "partner_code": getattr(current_user, "partner_code", None),
    }


@api_bp.route("/me/tokens")
@roles_required(*STAFF_ROLES)
@api_bp.response(200, TokenSchema(many=True))
def list_my_tokens() -> Any:
    """The caller's personal API tokens (secrets are never shown again)."""
    return db.session.scalars(
        db.select(ApiToken).where(ApiToken.user_id == current_user.id).order_by(ApiToken.id)
    ).all()


@api_bp.route("/me/tokens", methods=["POST"])
@roles_required(*STAFF_ROLES)
@api_bp.arguments(TokenCreateSchema, required=False)
@api_bp.response(201, IssuedTokenSchema)
def create_my_token(data: dict[str, Any]) -> Any:
    """Issue a new personal API token; the secret is in this response only."""
    issued = service.create_api_token(email=current_user.email, actor=current_user.actor, **data)
    return {**schema_values(issued.token, TokenSchema()), "token": issued.secret}


@api_bp.route("/me/tokens/<int(max=2147483647):token_id>", methods=["DELETE"])
@roles_required(*STAFF_ROLES)
@api_bp.response(204)
def revoke_my_token(token_id: int) -> None:
    """Revoke one of the caller's tokens."""
    service.revoke_api_token(token_id=token_id, user_id=current_user.id, actor=current_user.actor)


@api_bp.route("/users")
@roles_required(ADMIN)
@api_bp.response(200, UserSchema(many=True))
@api_bp.paginate()
def list_users(pagination_parameters: Any) -> Any:
    """All users (admin)."""
    return paginate(db.select(User).order_by(User.id), pagination_parameters)


@api_bp.route("/users", methods=["POST"])
@roles_required(ADMIN)
@api_bp.arguments(UserCreateSchema)
@api_bp.response(201, UserSchema)
def create_user(data: dict[str, Any]) -> Any:
    """Create a staff or partner-portal user (admin)."""
    return service.create_user(
        actor=current_user.actor, hash_profile=current_app.config["PASSWORD_HASH_PROFILE"], **data
    )
