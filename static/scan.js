// Scan station: keep the input focused for the keyboard-wedge scanner, and beep the outcome.
(function () {
  "use strict";
  var input = document.getElementById("code");
  if (input) {
    input.focus();
    document.addEventListener("click", function (event) {
      if (event.target.tagName !== "SELECT" && event.target.tagName !== "A") { input.focus(); }
    });
    input.addEventListener("blur", function () {
      setTimeout(function () {
        if (document.activeElement && document.activeElement.tagName === "SELECT") { return; }
        input.focus();
      }, 150);
    });
  }
  var station = document.querySelector(".station");
  var severity = station ? station.getAttribute("data-severity") : "";
  if (!severity || !window.AudioContext) { return; }
  try {
    var ctx = new AudioContext();
    var tones = { success: [880, 0.12], warning: [520, 0.3], error: [220, 0.6] };
    var tone = tones[severity];
    var osc = ctx.createOscillator();
    var gain = ctx.createGain();
    osc.frequency.value = tone[0];
    osc.type = severity === "error" ? "square" : "sine";
    gain.gain.value = 0.15;
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + tone[1]);
  } catch (e) { /* no audio device: the colours still tell */ }
}());
