// Held keys, touch buttons and gamepads -> buttons -> action, using the server's keymap (server/keymap.py):
// keymap.keys maps KeyboardEvent.code to a button, keymap.table maps a button bitmask to an action.
//
// Keys play only while the focus is on the page or the game area. A control the player reached
// with Tab keeps its keys (arrows move a slider, Space presses a button); one they clicked gives
// them back: the first game key blurs it and plays. Escape always returns the keys to the game.

const SHORTCUTS = ["KeyR", "KeyP", "KeyN", "KeyY", "KeyT"];
const CONTROLS = "button, select, input, textarea, a[href], summary, [contenteditable]";
const POINTER_FOCUS_MS = 600; // a focus this soon after a pointer press came from the pointer
// Gamepads (the browser's standard mapping): the d-pad or the left stick moves, A / B / X / Y fire.
const PAD_BUTTONS = { 12: "UP", 13: "DOWN", 14: "LEFT", 15: "RIGHT", 0: "FIRE", 1: "FIRE", 2: "FIRE", 3: "FIRE" };
const STICK_DEAD_ZONE = 0.5;

export class Keyboard {
  constructor(onChange, onShortcut, gameArea) {
    this.onChange = onChange; // (actionIndex) => void, called when the resolved action changes
    this.onShortcut = onShortcut; // (key) => void for R / P / N / Y / T
    this.gameArea = gameArea; // the element whose focus means "playing"
    this.keymap = null;
    this.keys = new Set(); // buttons held on the keyboard
    this.touches = new Map(); // pointerId -> button held on screen
    this.pad = new Set(); // buttons held on gamepads
    this.polling = false;
    this.action = 0;
    this.lastPointerDown = -Infinity;
    this.pointerFocused = new WeakSet(); // controls that got the focus from a click or a tap
    window.addEventListener("keydown", (e) => this.down(e));
    window.addEventListener("keyup", (e) => this.up(e));
    window.addEventListener("blur", () => this.clear());
    window.addEventListener("gamepadconnected", () => this.pollPads());
    document.addEventListener("visibilitychange", () => document.hidden && this.clear());
    document.addEventListener("pointerdown", () => (this.lastPointerDown = performance.now()), true);
    document.addEventListener("focusin", (e) => {
      if (performance.now() - this.lastPointerDown < POINTER_FOCUS_MS) this.pointerFocused.add(e.target);
      else this.pointerFocused.delete(e.target);
    });
  }

  setKeymap(keymap) {
    this.keymap = keymap;
    this.clear();
  }

  // The control that has the keys (a focused form control), or null when they play.
  controlWithKeys(e) {
    const el = e.target instanceof Element ? e.target.closest(CONTROLS) : null;
    if (!el || (this.gameArea && this.gameArea.contains(el))) return null;
    return el;
  }

  down(e) {
    const control = this.controlWithKeys(e);
    if (e.code === "Escape" && control) return control.blur();
    if (!this.keymap) return;
    const button = this.keymap.keys[e.code];
    const isShortcut = !e.repeat && !e.ctrlKey && !e.metaKey && !e.altKey && SHORTCUTS.includes(e.code);
    if (!button && !isShortcut) return;
    if (control) {
      if (!this.pointerFocused.has(control)) return; // reached with Tab: the control keeps its keys
      control.blur(); // clicked a moment ago: the keys go back to the game
    }
    if (button) {
      e.preventDefault();
      this.keys.add(button);
      this.update();
    } else {
      this.onShortcut(e.code.slice(3));
    }
  }

  up(e) {
    if (!this.keymap) return;
    const button = this.keymap.keys[e.code];
    if (button && this.keys.has(button)) {
      e.preventDefault();
      this.keys.delete(button);
      this.update();
    }
  }

  // On-screen buttons and taps: one button per pointer.
  press(pointerId, button) {
    this.touches.set(pointerId, button);
    this.update();
  }

  release(pointerId) {
    if (this.touches.delete(pointerId)) this.update();
  }

  // Gamepads have no events for their buttons: read them every animation frame while one is
  // connected (a press shorter than a tick is latched by the server like a key tap).
  pollPads() {
    if (this.polling) return;
    this.polling = true;
    const poll = () => {
      const pads = [...(navigator.getGamepads ? navigator.getGamepads() : [])].filter((p) => p && p.connected);
      const held = new Set();
      for (const pad of pads) {
        pad.buttons.forEach((b, i) => b.pressed && PAD_BUTTONS[i] && held.add(PAD_BUTTONS[i]));
        const [x = 0, y = 0] = pad.axes;
        if (x < -STICK_DEAD_ZONE) held.add("LEFT");
        if (x > STICK_DEAD_ZONE) held.add("RIGHT");
        if (y < -STICK_DEAD_ZONE) held.add("UP");
        if (y > STICK_DEAD_ZONE) held.add("DOWN");
      }
      if (held.size !== this.pad.size || [...held].some((b) => !this.pad.has(b))) {
        this.pad = held;
        this.update();
      }
      if (pads.length) requestAnimationFrame(poll);
      else this.polling = false;
    };
    requestAnimationFrame(poll);
  }

  clear() {
    this.keys.clear();
    this.touches.clear();
    this.update();
  }

  get held() {
    return new Set([...this.keys, ...this.touches.values(), ...this.pad]);
  }

  update() {
    if (!this.keymap) return;
    const held = this.held;
    let mask = 0;
    this.keymap.buttons.forEach((b, i) => {
      if (held.has(b)) mask |= 1 << i;
    });
    const action = this.keymap.table[mask];
    if (action !== this.action) {
      this.action = action;
      this.onChange(action);
    }
  }
}
