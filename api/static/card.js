// Small improvements only: the page works without JavaScript.
(function () {
  "use strict";
  // Ask before deleting a task (the form still works without this).
  document.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (button && button.dataset.action === "delete") {
      var label = button.getAttribute("aria-label") || "Delete this task";
      if (!window.confirm(label + "?")) {
        event.preventDefault();
      }
    }
  });
  // Offer the browser's own time zone in the zone picker.
  var input = document.getElementById("tz");
  var list = document.getElementById("zones");
  if (input && list && window.Intl) {
    var own = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (own && !list.querySelector('option[value="' + own.replace(/"/g, "") + '"]')) {
      var option = document.createElement("option");
      option.value = own;
      list.insertBefore(option, list.firstChild);
    }
  }
})();
