"""The customer's claim form and the tracking lookup (Flask-WTF, CSRF on both)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import MultipleFileField
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional, Regexp

from catalog.faults import FAULT_CATEGORIES
from claims.texts import FAULTS, REMEDIES
from common.i18n import LANGUAGE_NAMES, LANGUAGES


class ClaimForm(FlaskForm):
    submission_id = HiddenField(validators=[DataRequired(), Length(max=64)])
    serial_number = StringField(
        _l("Serial number"),
        validators=[DataRequired(), Length(max=64),
                    Regexp(r"^\s*[A-Za-z0-9][A-Za-z0-9._/-]*\s*$",
                           message=_l("Letters, digits and . _ / - only"))],
    )
    email = EmailField(_l("Email used for the purchase"),
                       validators=[DataRequired(), Email(), Length(max=254)])
    fault_category = SelectField(_l("What is wrong?"),
                                 choices=[SelectChoice(c, FAULTS[c]) for c in FAULT_CATEGORIES],
                                 validators=[DataRequired()])
    description = TextAreaField(_l("Describe the problem"),
                                validators=[DataRequired(), Length(min=5, max=5000)])
    dead_on_arrival = BooleanField(_l("The product never worked (dead on arrival)"))
    remedy = RadioField(_l("What would you prefer?"),
                        choices=[SelectChoice(key, label) for key, label in REMEDIES.items()],
                        default="repair", validators=[DataRequired()])
    customer_name = StringField(_l("Your name"), validators=[DataRequired(), Length(max=200)])
    address_line1 = StringField(_l("Street address"),
                                validators=[DataRequired(), Length(max=200)])
    address_line2 = StringField(_l("Address line 2"), validators=[Optional(), Length(max=200)])
    postal_code = StringField(_l("Postal code"), validators=[DataRequired(), Length(max=20)])
    city = StringField(_l("City"), validators=[DataRequired(), Length(max=100)])
    country = StringField(_l("Country (2 letters, e.g. SE)"),
                          validators=[DataRequired(), Regexp(r"^[A-Za-z]{2}$")])
    phone = StringField(_l("Phone (optional)"), validators=[Optional(), Length(max=40)])
    language = SelectField(_l("Language for our messages"),
                           choices=[SelectChoice(code, LANGUAGE_NAMES[code]) for code in LANGUAGES])
    photos = MultipleFileField(_l("Photos of the defect (optional, up to 5)"))


class TrackForm(FlaskForm):
    number = StringField(_l("Claim or RMA number"),
                         validators=[DataRequired(), Length(max=32)])
    email = EmailField(_l("Email"), validators=[DataRequired(), Email(), Length(max=254)])
