// The standalone chat page: fills in the embed snippet with this server's origin.
const snippet = document.querySelector("[data-testid=embed-snippet]");
snippet.textContent = `<script src="${location.origin}/widget.js" data-title="Chat with us" async></script>`;

const copy = document.getElementById("copy-snippet");
copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(snippet.textContent);
    copy.textContent = "Copied";
  } catch {
    getSelection().selectAllChildren(snippet); // clipboard refused: select it for Ctrl+C
    copy.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { copy.textContent = "Copy"; }, 2000);
});
