export default function render(root) {
  root.textContent = 'inventory'
}
