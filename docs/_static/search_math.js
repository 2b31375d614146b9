/* Search results quote each page's text, but the math in it is LaTeX that
   MathJax typesets only on the page itself: a summary showed "\(\log q_c\)".
   Before Sphinx's search (searchtools.js) turns a page into text, this turns
   each formula's LaTeX into plain text ("log q_c"). It changes nothing on
   any other page. */
(function () {
  "use strict";
  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε",
    varepsilon: "ε", eta: "η", kappa: "κ", lambda: "λ", mu: "μ", pi: "π",
    sigma: "σ", tau: "τ", theta: "θ", Sigma: "Σ", sum: "Σ", prod: "Π",
    partial: "∂", infty: "∞", le: "≤", leq: "≤", ge: "≥", geq: "≥",
    ne: "≠", neq: "≠", approx: "≈", times: "×", cdot: "·", to: "→",
    rightarrow: "→", in: "∈", pm: "±", top: "ᵀ", ldots: "…", dots: "…",
    cdots: "⋯", ell: "ℓ", lvert: "|", rvert: "|", lVert: "‖", rVert: "‖", mid: "|",
  };
  const SPACES = new Set([",", ";", ":", "!", " ", "quad", "qquad"]);
  const DROP = new Set(["left", "right", "big", "Big", "bigg", "Bigg",
                        "displaystyle", "tfrac", "dfrac", "frac"]);
  function texToText(tex) {
    let s = tex.trim().replace(/^\\[([]/, "").replace(/\\[)\]]$/, "");
    // \frac{a}{b} -> a/b (innermost first)
    for (let i = 0; i < 5; i++) {
      s = s.replace(/\\[td]?frac\{([^{}]*)\}\{([^{}]*)\}/g, "($1)/($2)");
    }
    s = s.replace(/\\(operatorname|mathrm|mathbf|mathit|text|textrm)\{([^{}]*)\}/g, "$2");
    s = s.replace(/\\mathbb\{R\}/g, "ℝ");
    s = s.replace(/\\(begin|end)\{[^{}]*\}/g, " ").replace(/\\\\|&/g, " ");
    s = s.replace(/\\\|/g, "‖");
    s = s.replace(/\\([A-Za-z]+|[,;:! ])/g, (m, name) => {
      if (name in SYMBOLS) return SYMBOLS[name];
      if (SPACES.has(name)) return " ";
      if (DROP.has(name)) return "";
      return name;  // \log, \exp, \max: the word itself
    });
    return s.replace(/[{}]/g, "").replace(/\s+/g, " ").trim();
  }
  function patch() {
    if (typeof Search === "undefined" || !Search.htmlToText || Search._mathPatched) return;
    const original = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math").forEach((el) => {
        el.textContent = texToText(el.textContent);
      });
      return original(doc.documentElement.outerHTML, anchor);
    };
    Search._mathPatched = true;
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", patch);
  } else {
    patch();
  }
})();
