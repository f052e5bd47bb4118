// The npm packages the pages use, bundled by scripts/web.sh (esbuild) into dist/vendor/vendor.js:
// xterm.js for the serial console, noVNC for the graphical console.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import RFB from "@novnc/novnc/lib/rfb.js";

window.VineVendor = { Terminal, FitAddon, RFB };
