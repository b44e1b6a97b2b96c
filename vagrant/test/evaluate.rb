# Evaluates the Vagrantfile (at the repository root) without Vagrant: a stand-in Vagrant.configure records what the
# file asks for (machines, NICs, provider settings, provisioners), then checks it against the
# namespace lab's topology (scripts/lab). Catches what `ruby -c` cannot: wrong addresses or
# MACs, a missing provisioning script, a broken environment-variable parser. It cannot tell
# whether Vagrant or vagrant-libvirt accept the options; only a real `vagrant up` does.
#
#   ruby vagrant/test/evaluate.rb Vagrantfile     (scripts/check-vagrant runs it)
# Environment variables reach the Vagrantfile as usual (MUX_VAGRANT_IO=afxdp ...).

# Records every call on a provider object (lv.cpus = 2, lv.pci(...), vb.customize [...]).
class Recorder
  attr_reader :calls

  def initialize
    @calls = []
  end

  def method_missing(name, *args, **kwargs)
    @calls << [name, args, kwargs]
    self
  end

  def respond_to_missing?(*)
    true
  end
end

# config.vm: the parts of Vagrant's VM configuration the lab's Vagrantfile uses.
class VMConfig
  attr_accessor :box, :hostname
  attr_reader :networks, :synced, :providers, :provisions, :machines

  def initialize
    @networks = []
    @synced = []
    @providers = Hash.new { |h, k| h[k] = [] }
    @provisions = []
    @machines = {}
  end

  def network(type, **options)
    @networks << [type, options]
  end

  def synced_folder(host, guest, options = {})
    @synced << [host, guest, options]
  end

  def provider(name, &block)
    @providers[name] << block
  end

  def provision(name, **options)
    @provisions << [name, options]
  end

  def define(name)
    machine = Config.new
    yield machine
    @machines[name] = machine
  end
end

class Config
  attr_reader :vm

  def initialize
    @vm = VMConfig.new
  end
end

module Vagrant
  class << self
    attr_reader :root

    def configure(version)
      raise "configure version #{version}" unless version == "2"

      @root = Config.new
      yield @root
    end
  end
end

vagrantfile = File.expand_path(ARGV.fetch(0, File.join(__dir__, "..", "..", "Vagrantfile")))
repo = File.dirname(vagrantfile)
load vagrantfile
root = Vagrant.root or abort "the Vagrantfile did not call Vagrant.configure"

FAILURES = []
def check(ok, message)
  FAILURES << message unless ok
end

# The namespace lab's links (scripts/lab): node => [[link, host part]...].
EXPECTED = {
  "router" => [[1, 1], [11, 1], [12, 1], [21, 1], [22, 1]],
  "mux1" => [[11, 2]], "mux2" => [[12, 2]],
  "host1" => [[21, 2]], "host2" => [[22, 2]],
  "client" => [[1, 2]],
}.freeze
passthrough = ENV.fetch("MUX_VAGRANT_PASSTHROUGH", "").split(",").map { |e| e.split("=").first }

check(root.vm.machines.keys.sort == EXPECTED.keys.sort, "machines: #{root.vm.machines.keys.inspect}")
check(root.vm.synced.any? { |host, guest, _| host == "." && guest == "/vagrant" },
      "the repository root is not synced to /vagrant")

%i[libvirt virtualbox].each do |provider|
  macs = {}
  root.vm.machines.each do |name, machine|
    override = Config.new
    settings = Recorder.new
    machine.vm.providers[provider].each { |block| block.call(settings, override) }
    nics = (machine.vm.networks + override.vm.networks).select { |type, _| type == :private_network }
    # A passed-through device replaces the virtual NIC under libvirt only.
    expected = EXPECTED.fetch(name, []).reject do |link, _|
      provider == :libvirt && passthrough.include?("#{name}:#{link}")
    end
    got = nics.map { |_, o| o[:ip] }
    check(got == expected.map { |l, h| "10.0.#{l}.#{h}" }, "#{provider} #{name}: lab addresses #{got.inspect}")
    nics.each do |_, o|
      link, host = o[:ip].split(".")[2..3].map(&:to_i)
      want = [2, 0, 10, 0, link, host].map { |b| format("%02x", b) }
      want = provider == :libvirt ? want.join(":") : want.join
      check(o[:mac] == want, "#{provider} #{name} #{o[:ip]}: MAC #{o[:mac]}, want #{want}")
      check(o[:auto_config] == false, "#{provider} #{name} #{o[:ip]}: Vagrant would configure it")
      check(!macs.key?(o[:mac]), "#{provider}: MAC #{o[:mac]} used twice")
      macs[o[:mac]] = name
      if provider == :libvirt
        check(o[:libvirt__network_name] == "mux-lab-l#{link}", "#{name} #{o[:ip]}: network #{o[:libvirt__network_name]}")
        check(o[:libvirt__forward_mode] == "veryisolated", "#{name} #{o[:ip]}: the Vagrant host would get an address")
      else
        check(o[:virtualbox__intnet] == "mux-lab-l#{link}", "#{name} #{o[:ip]}: intnet #{o[:virtualbox__intnet]}")
      end
    end
    cpus = settings.calls.find { |call| call[0] == :cpus= }
    memory = settings.calls.find { |call| call[0] == :memory= }
    check(cpus && cpus[1][0].positive? && memory && memory[1][0] >= 512, "#{provider} #{name}: cpus/memory")
    pci = settings.calls.select { |call| call[0] == :pci }
    check(pci.size == passthrough.count { |e| e.start_with?("#{name}:") } || provider != :libvirt,
          "#{name}: #{pci.size} passed-through devices")
    puts format("%-10s %-7s %s%s", provider, name,
                nics.map { |_, o| "#{o[:ip]} #{o[:mac]}#{" model #{o[:model_type]}" if o[:model_type]}" }.join(", "),
                pci.empty? ? "" : " + PCI #{pci.map { |c| c[1][0].values.join(':') }.join(', ')}")
  end
end

root.vm.machines.each do |name, machine|
  scripts = machine.vm.provisions.map { |_, o| o[:inline].to_s[%r{/vagrant/(\S+\.sh)}, 1] }
  check(scripts.size == 2 && scripts.all? { |s| s && File.file?(File.join(repo, s)) },
        "#{name}: provisioning scripts #{scripts.inspect} (relative to the repository)")
  io = machine.vm.provisions.map { |_, o| o[:env]&.fetch("MUX_VAGRANT_IO", nil) }.uniq
  check(io.size == 1 && %w[dpdk afxdp].include?(io.first), "#{name}: MUX_VAGRANT_IO passed as #{io.inspect}")
end

if FAILURES.empty?
  puts "Vagrantfile: #{root.vm.machines.size} machines, addressing and MACs as in the namespace lab"
else
  FAILURES.each { |f| warn "FAIL: #{f}" }
  exit 1
end
