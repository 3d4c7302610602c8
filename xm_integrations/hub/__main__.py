"""``python -m xm_integrations.hub sync-templates``: copy ``model_cards/`` into the package after editing a template."""

from __future__ import annotations

import sys

from xm_integrations.hub.cards import _PACKAGE_TEMPLATES, sync_templates


def main(argv: list[str]) -> int:
    if argv != ["sync-templates"]:
        print("usage: python -m xm_integrations.hub sync-templates", file=sys.stderr)
        return 2
    changed = sync_templates()
    for name in changed:
        print(f"updated {_PACKAGE_TEMPLATES / name}")
    if not changed:
        print("templates already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
