// tickwheel console: the live check of the task form (field errors and the next fire times
// as a schedule is typed), the dry run, and type-dependent fields. Everything else works
// without this script. Requests carry the session's CSRF token in X-CSRF-Token.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var csrf = main ? main.getAttribute("data-csrf") : "";
  var form = document.getElementById("task-form");
  if (!form) return;

  function post(url, done) {
    var body = new URLSearchParams(new FormData(form));
    fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" },
      body: body,
      credentials: "same-origin"
    }).then(function (r) {
      if (r.redirected || r.status === 401 || r.status === 303) { location.href = "/signin?m=expired"; return null; }
      return r.ok ? r.json() : null;
    }).then(function (j) { if (j) done(j); }).catch(function () {});
  }

  function showErrors(errors) {
    var spans = form.parentNode.querySelectorAll(".err, #err-");
    for (var i = 0; i < spans.length; i++) { spans[i].textContent = ""; }
    var top = document.getElementById("err-");
    if (top) top.classList.add("hidden");
    Object.keys(errors || {}).forEach(function (f) {
      var el = document.getElementById("err-" + f) || top;
      if (!el) return;
      el.textContent = errors[f];
      el.classList.remove("hidden");
    });
  }

  function showType() {
    var sel = document.getElementById("type");
    var t = sel ? sel.value : "";
    var fields = form.querySelectorAll("[data-types]");
    for (var i = 0; i < fields.length; i++) {
      var on = fields[i].getAttribute("data-types").split(" ").indexOf(t) >= 0;
      fields[i].hidden = !on;
    }
  }

  var timer = null;
  function check() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      post("/tasks/check", function (j) {
        showErrors(j.errors);
        if (j.preview) document.getElementById("preview").innerHTML = j.preview;
      });
    }, 250);
  }

  form.addEventListener("input", check);
  form.addEventListener("change", function (e) { if (e.target.id === "type") showType(); check(); });
  showType();

  var dry = document.getElementById("dry-run-button");
  if (dry) {
    dry.addEventListener("click", function () {
      post("/tasks/dry-run", function (j) {
        showErrors(j.errors);
        document.getElementById("dry-run").innerHTML = j.html || "";
      });
    });
  }
})();

// The copy button beside a secret that is shown once.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (b) {
    b.addEventListener("click", function () {
      var field = document.getElementById(b.getAttribute("data-copy"));
      if (!field) return;
      field.select();
      var done = function () { b.textContent = "Copied"; };
      var fallback = function () { if (document.execCommand("copy")) done(); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, fallback);
      } else {
        fallback();
      }
    });
  });
})();
