// Minified output of real libraries must behave like the original.
//
// Each library from node_modules is copied to a temporary node_modules, the
// listed files are minified there with OUR pipeline (`cachefront minify-js`,
// the same oxc call the build and the edge make), and the same
// representative calls run against the original and the minified copy; the
// JSON-able results must be identical. There is no known-failure list: a
// library that fails to minify, or behaves differently, fails the test.
//
// The checks are not a formality: minify-js 0.6.0, the minifier used before
// oxc, panicked on five of these libraries and broke all five once the panic
// was patched out (it turned `function` declarations that use `this` /
// `arguments` into arrow functions). See snippets.test.mjs and docs/assets.md.
//
// Run: node --test tests/minify/   (set CACHEFRONT_BIN to skip `cargo build`).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

process.env.NODE_ENV = "production"; // react's production builds

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const modules = path.join(root, "node_modules");
// jQuery needs a DOM: jsdom (never minified) gives each run a fresh window.
const { JSDOM } = createRequire(path.join(modules, "_"))("jsdom");

const JQUERY_PAGE = `<!doctype html><html><body>
<div id="app" class="box main" data-user='{"id":7,"roles":["a","b"]}'>
  <ul class="items"><li>one</li><li class="odd">two</li><li>three</li><li class="odd">four</li></ul>
  <p>Some <b>bold</b> &amp; <i>italic</i> text.</p>
</div>
<form id="f"><input name="q" value="tent &amp; stove"><input type="checkbox" name="c" value="1" checked>
<select name="s" multiple><option selected>x</option><option>y</option><option selected>z</option></select>
<textarea name="t">line1
line2</textarea></form>
</body></html>`;

function cachefrontBinary() {
  if (process.env.CACHEFRONT_BIN) return process.env.CACHEFRONT_BIN;
  execFileSync("cargo", ["build", "--quiet", "-p", "cachefront-cli"], { cwd: root, stdio: "inherit" });
  const targetDir = path.resolve(root, process.env.CARGO_TARGET_DIR ?? "target");
  return path.join(targetDir, "debug", "cachefront");
}

const YAML = `
anchors:
  base: &base { name: base, tags: [a, b] }
  derived:
    <<: *base
    name: derived
numbers: [0x1F, 0o17, 1_000, .5, -.inf, .nan]
strings:
  folded: >
    one
    two
  literal: |
    keep
     indent
  quoted: "tab\\there \\u263A"
dates: [2001-12-14t21:59:43.10-05:00, 2002-12-14]
empty: ~
`;

const SOURCE = `
import { a as b } from "m";
export default class K extends B { #p = 1; static s = 2; get v() { return this.#p ?? 0; } }
const f = async (x, ...r) => { for await (const y of x) yield* r; };
label: for (let i = 0; i < 3; i++) { if (i) continue label; else break; }
const t = tag\`a\${1}b\`; const re = /a(?<n>b)/gu; x ||= y?.z?.[0] ** 2;
`;

const LIBRARIES = [
  {
    name: "lodash",
    packages: ["lodash"],
    minify: ["lodash/lodash.js"],
    load: (get) => get("lodash/lodash.js"),
    checks: (_) => ({
      chunk: _.chunk([1, 2, 3, 4, 5], 2),
      sortBy: _.sortBy([{ n: "b", a: 2 }, { n: "a", a: 2 }, { n: "c", a: 1 }], ["a", "n"]),
      groupBy: _.groupBy([6.1, 4.2, 6.3], Math.floor),
      merge: _.merge({ a: [{ b: 2 }, { d: 4 }] }, { a: [{ c: 3 }, { e: 5 }] }),
      cloneDeep: _.cloneDeep({ a: [1, { b: new Date(0).toISOString() }], c: new Map([[1, 2]]).size }),
      isEqual: [_.isEqual({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), _.isEqual([1], [2])],
      strings: [_.camelCase("Foo Bar-baz"), _.kebabCase("fooBarBaz"), _.startCase("--foo-bar--"), _.escape("<a href=\"x\">&'</a>")],
      template: _.template("<% _.forEach(users, function(u) { %><li><%- u %></li><% }); %>")({ users: ["<fred>", "barney"] }),
      getSet: [_.get({ a: [{ b: { c: 3 } }] }, "a[0].b.c"), _.set({}, "x[0].y", 1)],
      ranges: [_.range(0, 20, 5), _.range(-4), _.uniqBy([2.1, 1.2, 2.3], Math.floor), _.flattenDeep([1, [2, [3, [4]], 5]])],
      partition: _.partition([1, 2, 3, 4], (n) => n % 2),
      memoize: (() => { let calls = 0; const m = _.memoize((n) => (calls++, n * 2)); m(2); m(2); m(3); return calls; })(),
      chain: _.chain([3, 1, 2]).map((n) => n * 10).sortBy().reverse().value(),
      debounceType: typeof _.debounce(() => {}, 10),
    }),
  },
  {
    name: "underscore",
    packages: ["underscore"],
    minify: ["underscore/underscore-umd.js"],
    load: (get) => get("underscore/underscore-umd.js"),
    checks: (_) => ({
      map: _.map({ a: 1, b: 2 }, (v, k) => k + v),
      groupBy: _.groupBy(["one", "two", "three"], "length"),
      uniq: _.uniq([1, 2, 1, 4, 1, 3]),
      intersection: _.intersection([1, 2, 3], [101, 2, 1, 10], [2, 1]),
      template: _.template("hello: <%= name %> <%- html %>")({ name: "moe", html: "<b>" }),
      chain: _.chain([{ n: "b", a: 2 }, { n: "a", a: 1 }]).sortBy("a").pluck("n").value(),
      isEqual: _.isEqual({ a: [1, 2] }, { a: [1, 2] }),
      escape: _.escape("Curly, Larry & Moe <x>"),
      range: _.range(1, 11, 3),
      zip: _.zip(["a", "b"], [1, 2], [true, false]),
      debounceType: typeof _.debounce(() => {}, 10),
    }),
  },
  {
    name: "moment",
    packages: ["moment"],
    minify: ["moment/moment.js"],
    load: (get) => get("moment/moment.js"),
    checks: (moment) => ({
      format: moment.utc("2024-02-29T12:34:56Z").format("dddd, MMMM Do YYYY, h:mm:ss a [UTC] Z"),
      addYear: moment.utc("2024-02-29").add(1, "year").format("YYYY-MM-DD"),
      addMonth: moment.utc("2024-01-31").add(1, "month").toISOString(),
      diff: moment.utc("2024-03-01").diff(moment.utc("2023-03-01"), "days"),
      startOf: moment.utc("2024-05-15T10:00:00Z").startOf("isoWeek").toISOString(),
      parse: moment.utc("31/12/2023 23:59", "DD/MM/YYYY HH:mm", true).valueOf(),
      invalid: moment.utc("2023-02-30", "YYYY-MM-DD", true).isValid(),
      duration: [moment.duration(3723, "seconds").toISOString(), moment.duration(3, "days").humanize()],
      relative: moment.utc("2024-01-01").from(moment.utc("2024-03-01")),
      leap: [moment([2000]).isLeapYear(), moment([1900]).isLeapYear()],
      calendarWeek: moment.utc("2021-01-03").isoWeek(),
    }),
  },
  {
    name: "js-yaml",
    packages: ["js-yaml"],
    minify: ["js-yaml/dist/js-yaml.cjs.js"],
    load: (get) => get("js-yaml/dist/js-yaml.cjs.js"),
    checks: (yaml) => {
      let error;
      try {
        yaml.load("a: [1, 2\nb: }");
      } catch (e) {
        error = e.message;
      }
      return {
        load: yaml.load(YAML),
        all: yaml.loadAll("---\na: 1\n---\n- x\n- y\n"),
        dump: yaml.dump({ s: "multi\nline", n: [1, 2.5, -3e10, null], nested: { "key with: colon": true, date: "2024-01-01" } }, { sortKeys: true }),
        error,
      };
    },
  },
  {
    name: "acorn",
    packages: ["acorn"],
    minify: ["acorn/dist/acorn.js"],
    load: (get) => get("acorn/dist/acorn.js"),
    checks: (acorn) => {
      const ast = acorn.parse(SOURCE.replace("yield*", "await"), { ecmaVersion: "latest", sourceType: "module", locations: true });
      const tokens = [...acorn.tokenizer("let x = 0x1F + .5e3 // c\n`t${1}`", { ecmaVersion: "latest" })].map((t) => [t.type.label, t.value]);
      let error;
      try {
        acorn.parse("let let = 1", { ecmaVersion: 2020 });
      } catch (e) {
        error = e.message;
      }
      return { ast: JSON.parse(JSON.stringify(ast)), tokens, error, version: acorn.version };
    },
  },
  {
    name: "jquery",
    packages: ["jquery"],
    minify: ["jquery/dist/jquery.js"],
    load: (get) => get("jquery/dist/jquery.js"),
    checks: (factory) => {
      const { window } = new JSDOM(JQUERY_PAGE);
      const $ = factory(window);
      const clicks = [];
      $("#app").on("click", "li", function (event) {
        clicks.push([$(this).text(), event.type, $(event.delegateTarget).attr("id")]);
      });
      $(".items li").eq(2).trigger("click");
      $(".items").append("<li class='new'>five</li>").find(".new").addClass("odd").toggleClass("new");
      $("li.odd").first().remove();
      let resolved;
      $.Deferred().resolve(2, 3).done((a, b) => (resolved = a * b));
      const callbacks = $.Callbacks("once memory");
      const seen = [];
      callbacks.add((v) => seen.push(v));
      callbacks.fire("first");
      callbacks.fire("second");
      callbacks.add((v) => seen.push(`late ${v}`));
      return {
        version: $.fn.jquery,
        texts: $(".items li").map((_, li) => $(li).text()).get(),
        odd: $("li:odd").length,
        filters: [$("li").not(".odd").length, $("li").filter(":contains('t')").length, $("#app").is(".main")],
        traversal: [$("b").closest("div").attr("id"), $("b").parent().children().length, $("li").last().prevAll().length],
        html: $("p").html(),
        text: $("p").text(),
        data: $("#app").data("user"),
        attrs: [$("#app").attr("class"), $("#app").hasClass("box"), $("input[name=q]").val()],
        css: $("<div>").css({ width: 10, "margin-left": "2px" }).attr("style"),
        serialize: $("#f").serialize(),
        serializeArray: $("#f").serializeArray(),
        param: $.param({ a: [1, 2], b: { c: "d e" } }),
        extend: $.extend(true, {}, { a: { b: 1, c: [1] } }, { a: { d: 2, c: [2, 3] } }),
        utils: [$.map([1, 2, 3], (n) => (n % 2 ? n * 10 : null)), $.grep([1, 2, 3, 4], (n) => n > 2), $.inArray(3, [1, 2, 3]), $.isPlainObject({}), $.type(/x/), $.trim("  x  ")],
        parsed: $.parseHTML("<a href='/x'>x</a><span>y</span>").map((n) => n.nodeName),
        clicks,
        resolved,
        seen,
      };
    },
  },
  {
    name: "react",
    packages: ["react", "react-dom"],
    minify: [
      "react/cjs/react.production.js",
      "react-dom/cjs/react-dom.production.js",
      "react-dom/cjs/react-dom-server-legacy.node.production.js",
    ],
    load: (get) => ({ React: get("react/index.js"), server: get("react-dom/cjs/react-dom-server-legacy.node.production.js") }),
    checks: ({ React, server }) => {
      const h = React.createElement;
      const Theme = React.createContext("light");
      function Item({ label, n }) {
        const [count] = React.useState(n * 2);
        const theme = React.useContext(Theme);
        return h("li", { className: theme, "data-n": n }, label, ": ", count);
      }
      const Memo = React.memo(({ text }) => h("p", { style: { marginTop: 4, color: "red" } }, text));
      const app = h(
        Theme.Provider,
        { value: "dark" },
        h("main", null,
          h("h1", { title: 'a "quoted" <title>' }, "Items & <things>"),
          h("ul", null, ["a", "b", "c"].map((label, i) => h(Item, { key: label, label, n: i }))),
          h(React.Fragment, null, h(Memo, { text: "memo" }), h("input", { defaultValue: "x", disabled: true })),
          h("div", { dangerouslySetInnerHTML: { __html: "<i>raw</i>" } }),
        ),
      );
      return {
        html: server.renderToString(app),
        staticMarkup: server.renderToStaticMarkup(h("svg", { viewBox: "0 0 1 1" }, h("path", { d: "M0 0" }))),
        isValid: React.isValidElement(app),
        children: React.Children.count([1, [2, 3], null]),
      };
    },
  },
];

/** Loads files by path under one node_modules (package "exports" maps hide
 * the internal builds we minify); requires between them resolve there too. */
function loaderFor(nodeModules) {
  const req = createRequire(path.join(nodeModules, "_"));
  return (file) => req(path.join(nodeModules, file));
}

const bin = cachefrontBinary();
const scratch = mkdtempSync(path.join(os.tmpdir(), "cachefront-minify-"));
process.on("exit", () => rmSync(scratch, { recursive: true, force: true }));

/** Minifies `file` in place; returns null on success or the CLI's error. */
function minifyInPlace(file) {
  const result = spawnSync(bin, ["minify-js", file, "--out", file], { encoding: "utf8" });
  if (result.status === 0) return null;
  return result.stderr.trim().replace(/^error: .*?: /, "");
}

for (const library of LIBRARIES) {
  test(`${library.name}: minified build behaves like the original`, (t) => {
    const copy = path.join(scratch, library.name);
    for (const pkg of library.packages) {
      cpSync(path.join(modules, pkg), path.join(copy, "node_modules", pkg), { recursive: true });
    }
    const errors = [];
    for (const file of library.minify) {
      const target = path.join(copy, "node_modules", file);
      assert.ok(existsSync(target), `${file} exists`);
      const error = minifyInPlace(target);
      if (error) errors.push(error);
    }
    assert.deepEqual(errors, [], "minification failed");
    const original = library.checks(library.load(loaderFor(modules)));
    const minified = library.checks(library.load(loaderFor(path.join(copy, "node_modules"))));
    for (const file of library.minify) {
      const before = statSync(path.join(modules, file)).size;
      const after = statSync(path.join(copy, "node_modules", file)).size;
      t.diagnostic(`${file}: ${before} -> ${after} bytes`);
      assert.ok(after < before, `${file} got smaller`);
    }
    assert.deepStrictEqual(minified, original);
  });
}
