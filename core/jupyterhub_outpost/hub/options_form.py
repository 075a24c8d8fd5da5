"""The default options form: choose an Outpost and one of its flavors.

``render_options_form`` builds the HTML from the Outposts and their cached flavors; a
full flavor is shown but disabled. ``options_from_form`` turns the posted form into
``user_options`` ``{"outpost": ..., "flavor": ...}``, the same keys a REST API client
sends in the body of ``POST /hub/api/users/{name}/servers/{server}``.
"""

from __future__ import annotations

from html import escape

from .flavors import flavor_is_full, sorted_flavors
from .outposts import Outpost


def _flavor_label(flavor: dict, name: str) -> str:
    label = flavor.get("display_name") or name
    limit = flavor.get("max", -1)
    if isinstance(limit, int) and limit >= 0:
        label += f" ({flavor.get('current', 0)}/{limit} in use)"
    return label


def render_options_form(
    outposts: dict[str, Outpost],
    flavors: dict[str, dict[str, dict]],
    *,
    selected_outpost: str = "",
    selected_flavor: str = "",
) -> str:
    """HTML for JupyterHub's spawn page (inserted inside its <form>)."""
    parts = ['<div class="outpost-options">']
    parts.append('<div class="form-group"><label for="outpost-select">System</label>')
    parts.append('<select class="form-control" id="outpost-select" name="outpost">')
    first = selected_outpost if selected_outpost in outposts else next(iter(outposts), "")
    for name, outpost in outposts.items():
        sel = " selected" if name == first else ""
        parts.append(f'<option value="{escape(name)}"{sel}>{escape(outpost.label)}</option>')
    parts.append("</select></div>")
    for name, outpost in outposts.items():
        outpost_flavors = flavors.get(name) or {}
        if not outpost_flavors:
            continue
        hidden = "" if name == first else ' style="display:none"'
        parts.append(
            f'<fieldset class="form-group outpost-flavors" data-outpost="{escape(name)}"{hidden}>'
        )
        parts.append(f"<legend>Flavor on {escape(outpost.label)}</legend>")
        checked_done = False
        for fname, flavor in sorted_flavors(outpost_flavors):
            full = flavor_is_full(flavor)
            attrs = ""
            if full:
                attrs = ' disabled="disabled" data-full="true"'
            elif name != first:
                attrs = ' disabled="disabled"'
            if not full and not checked_done and (fname == selected_flavor or not selected_flavor):
                attrs += ' checked="checked"'
                checked_done = True
            fid = escape(f"flavor-{name}-{fname}")
            label = escape(_flavor_label(flavor, fname))
            parts.append(
                f'<div class="radio"><label for="{fid}">'
                f'<input type="radio" id="{fid}" name="flavor" value="{escape(fname)}"{attrs}> {label}'
            )
            if flavor.get("description"):
                parts.append(
                    f' <small class="text-muted">{escape(str(flavor["description"]))}</small>'
                )
            if full:
                parts.append(' <span class="label label-default">full</span>')
            parts.append("</label></div>")
        parts.append("</fieldset>")
    # show only the flavors of the chosen Outpost; full flavors stay disabled
    parts.append(
        "<script>(function(){var s=document.getElementById('outpost-select');"
        "function u(){document.querySelectorAll('.outpost-flavors').forEach(function(f){"
        "var on=f.getAttribute('data-outpost')===s.value;f.style.display=on?'':'none';"
        "f.querySelectorAll('input').forEach(function(i){"
        "i.disabled=!on||i.getAttribute('data-full')==='true';});});}"
        "s.addEventListener('change',u);u();})();</script>"
    )
    parts.append("</div>")
    return "\n".join(parts)


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """``{"outpost": [..], "flavor": [..]}`` -> ``{"outpost": .., "flavor": ..}``."""
    options: dict[str, str] = {}
    for key in ("outpost", "flavor"):
        values = formdata.get(key) or []
        if values and values[0]:
            options[key] = values[0]
    return options
