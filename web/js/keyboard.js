// Held keys -> buttons -> action, using the server's keymap (server/keymap.py):
// keymap.keys maps KeyboardEvent.code to a button, keymap.table maps a button bitmask to an action.

export class Keyboard {
  constructor(onChange, onShortcut) {
    this.onChange = onChange; // (actionIndex) => void, called when the resolved action changes
    this.onShortcut = onShortcut; // (key) => void for R / P / N / Y
    this.keymap = null;
    this.held = new Set();
    this.action = 0;
    window.addEventListener("keydown", (e) => this.down(e));
    window.addEventListener("keyup", (e) => this.up(e));
    window.addEventListener("blur", () => this.clear());
    document.addEventListener("visibilitychange", () => document.hidden && this.clear());
  }

  setKeymap(keymap) {
    this.keymap = keymap;
    this.clear();
  }

  down(e) {
    if (!this.keymap) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== "range") return;
    const button = this.keymap.keys[e.code];
    if (button) {
      e.preventDefault();
      this.held.add(button);
      this.update();
    } else if (!e.repeat && !e.ctrlKey && !e.metaKey && !e.altKey && ["KeyR", "KeyP", "KeyN", "KeyY", "KeyT"].includes(e.code)) {
      this.onShortcut(e.code.slice(3));
    }
  }

  up(e) {
    if (!this.keymap) return;
    const button = this.keymap.keys[e.code];
    if (button) {
      e.preventDefault();
      this.held.delete(button);
      this.update();
    }
  }

  clear() {
    this.held.clear();
    this.update();
  }

  update() {
    if (!this.keymap) return;
    let mask = 0;
    this.keymap.buttons.forEach((b, i) => {
      if (this.held.has(b)) mask |= 1 << i;
    });
    const action = this.keymap.table[mask];
    if (action !== this.action) {
      this.action = action;
      this.onChange(action);
    }
  }
}
