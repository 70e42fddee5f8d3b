// Loaded first, as a classic script: whatever fails later (a module that does not load, a
// script error), the page says so instead of staying blank.
(function () {
  function show(message) {
    var box = document.getElementById('error');
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    document.body.dataset.state = 'error';
  }
  window.addEventListener('error', function (ev) {
    var where = ev.filename ? ' (' + ev.filename.split('/').pop() + ')' : '';
    show('The page failed: ' + (ev.message || 'a resource did not load') + where);
  }, true);
  window.addEventListener('unhandledrejection', function (ev) {
    var r = ev.reason;
    show('The page failed: ' + (r && r.message ? r.message : String(r)));
  });
  window.addEventListener('load', function () {
    setTimeout(function () {
      if (!document.body.dataset.state) show('The dashboard script did not start; reload the page.');
    }, 3000);
  });
})();
