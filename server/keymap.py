"""The paper's keymap: arrows/WASD and Space, mapped by name onto a game's minimal action set.

Held keys make a set of buttons (UP, DOWN, LEFT, RIGHT, FIRE). `action_table` lists, for each of
the 32 button sets (bit i = BUTTONS[i]), the action whose name names the most held buttons and
no other, so diagonals and fire variants come from key combos. The page only looks the table up.
"""

from __future__ import annotations

from typing import Any

BUTTONS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
KEYS = {
    "ArrowUp": "UP",
    "KeyW": "UP",
    "ArrowDown": "DOWN",
    "KeyS": "DOWN",
    "ArrowLeft": "LEFT",
    "KeyA": "LEFT",
    "ArrowRight": "RIGHT",
    "KeyD": "RIGHT",
    "Space": "FIRE",
}
_SYMBOL = {"UP": "↑/W", "DOWN": "↓/S", "LEFT": "←/A", "RIGHT": "→/D", "FIRE": "Space"}


def action_buttons(name: str) -> frozenset[str]:
    """'UPRIGHTFIRE' -> {UP, RIGHT, FIRE}; 'NOOP' -> {}."""
    return frozenset(b for b in BUTTONS if b in name.upper())


def _cancel_opposites(held: frozenset[str]) -> frozenset[str]:
    if {"UP", "DOWN"} <= held:
        held -= {"UP", "DOWN"}
    if {"LEFT", "RIGHT"} <= held:
        held -= {"LEFT", "RIGHT"}
    return held


def resolve(held: frozenset[str] | set[str], meanings: list[str]) -> int:
    """The action for a set of held buttons: the largest action button set inside it."""
    held = _cancel_opposites(frozenset(held))
    best, best_size = (meanings.index("NOOP") if "NOOP" in meanings else 0), -1
    for i, name in enumerate(meanings):
        buttons = action_buttons(name)
        if buttons <= held and len(buttons) > best_size:
            best, best_size = i, len(buttons)
    return best


def action_table(meanings: list[str]) -> list[int]:
    """table[mask] = action index, mask bit i set when BUTTONS[i] is held."""
    return [resolve({b for i, b in enumerate(BUTTONS) if mask >> i & 1}, meanings) for mask in range(2 ** len(BUTTONS))]


def keymap(meanings: list[str]) -> dict[str, Any]:
    """What the page needs: key code -> button, the lookup table and a legend per action."""
    legend = []
    for i, name in enumerate(meanings):
        buttons = [b for b in BUTTONS if b in action_buttons(name)]
        legend.append({"action": name, "index": i, "keys": " + ".join(_SYMBOL[b] for b in buttons) or "(no key)"})
    return {"keys": KEYS, "buttons": list(BUTTONS), "table": action_table(meanings), "legend": legend}
