// The completion page: back to the crowd platform's completion URL after five seconds.
// (A module file, not an inline script, so the Content-Security-Policy can forbid inline code.)
const data = document.getElementById("completion-url");
if (data) {
  const url = JSON.parse(data.textContent);
  setTimeout(() => {
    window.location.href = url;
  }, 5000);
}
