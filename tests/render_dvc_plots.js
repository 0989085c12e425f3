// Render every chart of a `dvc plots show` page headless, with only the Vega scripts the page
// inlines (no network): prints "<svg length> <number of paths>" per chart. Used by tests/test_dvc.py.
// Usage: node render_dvc_plots.js dvc_plots/index.html
const fs = require("fs"); const vm = require("vm");
const page = fs.readFileSync(process.argv[2], "utf8");
const scripts = [...page.matchAll(/<script>\n([\s\S]*?)\n<\/script>/g)].map(m => m[1]);
const specs = [...page.matchAll(/var spec = ([\s\S]*?);\n\s*vegaEmbed/g)].map(m => JSON.parse(m[1]));
const ctx = {console, setTimeout, clearTimeout}; ctx.globalThis = ctx; ctx.self = ctx; vm.createContext(ctx);
for (const s of scripts) vm.runInContext(s, ctx);
(async () => {
  for (const spec of specs) {
    const vg = ctx.vegaLite.compile(spec).spec;
    const svg = await new ctx.vega.View(ctx.vega.parse(vg), {renderer: "none"}).toSVG();
    console.log(svg.length, (svg.match(/<path/g) || []).length);
  }
})().catch(e => { console.error(e); process.exit(1); });
