// Offer to register openvrm as the handler of web+vrm: links (the vendors' r-buttons open them).
// Loaded from the Connections page; no inline script (the CSP forbids it).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("register-handler");
  var status = document.getElementById("register-status");
  if (!button || typeof navigator.registerProtocolHandler !== "function") {
    return;
  }
  button.hidden = false;
  button.addEventListener("click", function () {
    try {
      navigator.registerProtocolHandler("web+vrm", window.location.origin + "/connect?uri=%s");
      if (status) {
        status.textContent = "Your browser will ask you to confirm; web+vrm links then open here.";
      }
    } catch (err) {
      if (status) {
        status.textContent = "This browser refused to register the handler (" + err.name + ").";
      }
    }
  });
});
