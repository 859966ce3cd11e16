// Postamt admin: the only script. Asks before forms marked data-confirm.
document.addEventListener("submit", function (ev) {
  var f = ev.target;
  var q = f && f.getAttribute && f.getAttribute("data-confirm");
  if (q && !window.confirm(q)) { ev.preventDefault(); }
});
