// The npm packages the pages use, bundled by scripts/web.sh (esbuild) into dist/vendor/vendor.js:
// xterm.js for the serial console, noVNC for the graphical console.
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import rfb from "@novnc/novnc/lib/rfb.js";

// noVNC's lib/ is CommonJS: its class is the module's `default` export.
const RFB = rfb.default ?? rfb;
window.VineVendor = { Terminal, FitAddon, RFB };
