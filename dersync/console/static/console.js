// dersync console: the only script. Refreshes the overview while a pass runs, asks before an
// action is sent, and selects every row of an inbox page. The pages work without it.
(function () {
  "use strict";

  // Confirmation dialogs: <form data-confirm="question">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // "Select all" for the checkboxes of one name: <input type="checkbox" data-select-all="nmi">.
  document.addEventListener("change", function (event) {
    var box = event.target;
    var name = box.getAttribute && box.getAttribute("data-select-all");
    if (!name) { return; }
    var boxes = document.querySelectorAll('input[type="checkbox"][name="' + name + '"]');
    for (var i = 0; i < boxes.length; i++) { boxes[i].checked = box.checked; }
  });

  // Live refresh: <div data-live="/fragment"> whose body carries data-poll="milliseconds".
  function poll(container) {
    var body = container.querySelector("[data-poll]");
    var every = body ? parseInt(body.getAttribute("data-poll"), 10) : 15000;
    window.setTimeout(function () {
      fetch(container.getAttribute("data-live"), {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (response) {
          if (response.redirected || !response.ok) {
            window.location.reload();  // signed out, or the session ended: the page says so
            return null;
          }
          return response.text();
        })
        .then(function (html) {
          if (html !== null) {
            container.innerHTML = html;  // rendered (and escaped) by the server
            container.setAttribute("data-refreshed", String(Date.now()));
          }
          poll(container);
        })
        .catch(function () { poll(container); });
    }, isNaN(every) ? 15000 : every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) { poll(live[i]); }
  });
})();
