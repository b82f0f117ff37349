#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"

namespace se {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string message = error_of(f);
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "expected '" << part << "' in: " << message;
  }
}

// A fresh directory per test, removed afterwards.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("se_config_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  fs::path dir_;
};

TEST_F(ConfigTest, BaseChainMergesObjectsDeepAndReplacesOtherValues) {
  write("bases/root.json", R"({"model": {"name": "unet", "depth": 4, "channels": [8, 16]}, "lr": 0.1, "seed": 1})");
  write("bases/mid.json", R"({"base": "root.json", "model": {"depth": 5}, "lr": 0.2})");
  const std::string top = write("top.json", R"({
    // comments are allowed
    "base": "bases/mid.json",
    "model": {"channels": [4]},
    "seed": 7
  })");
  Config cfg = Config::load(top);
  EXPECT_FALSE(cfg.has("base"));
  EXPECT_EQ(cfg.get<std::string>("model.name"), "unet");               // from root.json
  EXPECT_EQ(cfg.get<int64_t>("model.depth"), 5);                       // mid.json over root.json
  EXPECT_EQ(cfg.get<std::vector<int64_t>>("model.channels"), std::vector<int64_t>{4});  // lists replace
  EXPECT_DOUBLE_EQ(cfg.get<double>("lr"), 0.2);
  EXPECT_EQ(cfg.get<int>("seed"), 7);
  cfg.finish();
}

TEST_F(ConfigTest, NullRemovesAnInheritedKey) {
  write("sgd.json", R"({"optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9}})");
  Config cfg = Config::load(write("adamw.json", R"({"base": "sgd.json", "optimizer": {"type": "adamw", "momentum": null}})"));
  EXPECT_FALSE(cfg.has("optimizer.momentum"));
  EXPECT_EQ(cfg.get<std::string>("optimizer.type"), "adamw");
  EXPECT_EQ(cfg.get<double>("optimizer.lr"), 0.01);
  cfg.finish();  // the removed key is not reported as unread
}

TEST_F(ConfigTest, BaseListMergesInOrderBelowTheFile) {
  write("a.json", R"({"x": 1, "y": 1, "z": 1})");
  write("b.json", R"({"y": 2, "z": 2})");
  Config cfg = Config::load(write("c.json", R"({"base": ["a.json", "b.json"], "z": 3})"));
  EXPECT_EQ(cfg.get<int64_t>("x"), 1);
  EXPECT_EQ(cfg.get<int64_t>("y"), 2);
  EXPECT_EQ(cfg.get<int64_t>("z"), 3);
}

TEST_F(ConfigTest, BaseCycleIsAnError) {
  write("b.json", R"({"base": "a.json"})");
  const std::string a = write("a.json", R"({"base": "b.json"})");
  expect_error([&] { Config::load(a); }, {"'base' cycle", "a.json -> ", "b.json -> ", "a.json"});
  const std::string self = write("self.json", R"({"base": "self.json"})");
  expect_error([&] { Config::load(self); }, {"'base' cycle", "self.json"});
}

TEST_F(ConfigTest, MissingFilesAndBadBasesNameTheFiles) {
  expect_error([&] { Config::load((dir_ / "nope.json").string()); }, {"cannot open", "nope.json"});
  const std::string top = write("top.json", R"({"base": "gone.json"})");
  expect_error([&] { Config::load(top); }, {"cannot open", "gone.json", "the base of", "top.json"});
  const std::string bad = write("bad.json", R"({"base": 3})");
  expect_error([&] { Config::load(bad); }, {"bad.json", "'base' must be a path"});
  const std::string list = write("list.json", R"([1, 2])");
  expect_error([&] { Config::load(list); }, {"list.json", "top level must be a JSON object", "array"});
}

TEST_F(ConfigTest, MalformedJsonNamesFileLineAndColumn) {
  const std::string path = write("broken.json", "{\n  \"a\": 1,\n  \"b\": ,\n  \"c\": 2\n}\n");
  expect_error([&] { Config::load(path); }, {"broken.json:3:8: malformed JSON"});
  // Also in a base, where the error must name the base file, not the including one.
  write("bases/broken.json", "{\"a\": [1, 2}\n");
  const std::string top = write("top.json", R"({"base": "bases/broken.json"})");
  expect_error([&] { Config::load(top); }, {"broken.json:1:12: malformed JSON"});
}

TEST_F(ConfigTest, TypedReadsWithDefaultsAndMismatches) {
  Config cfg = Config::parse(R"({"n": 3, "big": 1e4, "half": 0.5, "s": "abc", "flag": true,
                                 "sizes": [1, 2], "names": ["a", "b"], "weights": [0.5, 1]})",
                             "inline.json");
  EXPECT_EQ(cfg.get<int64_t>("n"), 3);
  EXPECT_EQ(cfg.get<int64_t>("big"), 10000);  // an integral float is an integer
  EXPECT_DOUBLE_EQ(cfg.get<double>("n"), 3.0);
  EXPECT_FLOAT_EQ(cfg.get<float>("half"), 0.5f);
  EXPECT_EQ(cfg.get<std::string>("s"), "abc");
  EXPECT_TRUE(cfg.get<bool>("flag"));
  EXPECT_EQ(cfg.get<std::vector<int64_t>>("sizes"), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(cfg.get<std::vector<std::string>>("names"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cfg.get<std::vector<double>>("weights"), (std::vector<double>{0.5, 1.0}));
  EXPECT_EQ(cfg.get<int64_t>("crop_size", 512), 512);
  EXPECT_EQ(cfg.get<std::string>("mode", "whole"), "whole");
  EXPECT_EQ(cfg.get<int64_t>("n", 9), 3);  // present: the default is ignored
  expect_error([&] { cfg.get<int64_t>("half"); }, {"key 'half'", "inline.json", "expected an integer", "0.5"});
  expect_error([&] { cfg.get<bool>("s"); }, {"key 's'", "expected a boolean", "\"abc\" (string)"});
  expect_error([&] { cfg.get<std::vector<int64_t>>("names"); }, {"key 'names'", "a list of integers"});
  expect_error([&] { cfg.get<int64_t>("s", 4); }, {"key 's'", "expected an integer"});
  expect_error([&] { cfg.get<double>("missing"); }, {"missing key 'missing'", "a number", "inline.json"});
  expect_error([&] { cfg.sub("n"); }, {"key 'n'", "expected an object", "3 (number)"});
  cfg.finish();
}

TEST_F(ConfigTest, SubViewsAndListsOfObjects) {
  Config cfg = Config::parse(R"({"optimizer": {"type": "sgd", "lr": 0.01},
                                 "losses": [{"type": "ce", "weight": 1.0}, {"type": "dice"}]})");
  Config opt = cfg.sub("optimizer");
  EXPECT_EQ(opt.path(), "optimizer");
  EXPECT_EQ(opt.get<std::string>("type"), "sgd");
  EXPECT_DOUBLE_EQ(opt.get<double>("lr"), 0.01);
  EXPECT_DOUBLE_EQ(opt.get<double>("momentum", 0.9), 0.9);
  std::vector<Config> losses = cfg.sub_list("losses");
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_EQ(losses[1].path(), "losses[1]");
  EXPECT_EQ(losses[1].get<std::string>("type"), "dice");
  EXPECT_DOUBLE_EQ(losses[1].get<double>("weight", 0.5), 0.5);
  expect_error([&] { losses[1].get<double>("weight"); }, {"missing key 'losses[1].weight'"});
  // An absent object reads as empty: every key takes its default.
  Config sched = cfg.sub("scheduler");
  EXPECT_EQ(sched.get<std::string>("policy", "poly"), "poly");
  EXPECT_TRUE(cfg.sub_list("extra_losses").empty());
  // losses[0] was not read yet.
  expect_error([&] { cfg.finish(); }, {"unknown key 'losses[0].type'", "unknown key 'losses[0].weight'"});
  losses[0].get<std::string>("type");
  losses[0].get<double>("weight");
  cfg.finish();
}

TEST_F(ConfigTest, FinishNamesUnknownKeysWithFileSuggestionAndValidKeys) {
  write("base.json", R"({"optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9}, "crop_size": 512})");
  const std::string top = write("top.json", R"({"base": "base.json", "optimizer": {"lrr": 0.02}, "epochz": 3})");
  Config cfg = Config::load(top);
  cfg.get<int64_t>("crop_size");
  cfg.get<int64_t>("epochs", 10);
  Config opt = cfg.sub("optimizer");
  opt.get<std::string>("type");
  opt.get<double>("lr");
  opt.get<double>("momentum");
  opt.get<double>("weight_decay", 0.0);
  const std::string message = error_of([&] { cfg.finish(); });
  EXPECT_NE(message.find("unknown key 'optimizer.lrr' ("), std::string::npos) << message;
  EXPECT_NE(message.find("top.json): did you mean 'optimizer.lr'?"), std::string::npos) << message;
  EXPECT_NE(message.find("Valid keys in 'optimizer': lr, momentum, type, weight_decay"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key 'epochz'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'epochs'?"), std::string::npos) << message;
  EXPECT_NE(message.find("Valid top-level keys: crop_size, epochs, optimizer"), std::string::npos) << message;
}

TEST_F(ConfigTest, FinishOnlySuggestsCloseKeysAndReportsUnreadSections) {
  Config cfg = Config::parse(R"({"learning_rate": 1, "model": {"name": "fcn"}})", "x.json");
  cfg.get<double>("momentum", 0.0);
  const std::string message = error_of([&] { cfg.finish(); });
  EXPECT_EQ(message.find("did you mean"), std::string::npos) << message;  // nothing is close to learning_rate
  EXPECT_NE(message.find("unknown key 'learning_rate' (x.json). Valid top-level keys: momentum"), std::string::npos)
      << message;
  EXPECT_NE(message.find("unknown key 'model'"), std::string::npos) << message;
}

TEST_F(ConfigTest, SetOverridesParsesValuesAndCreatesKeysThatConsumersRead) {
  const std::string path = write("c.json", R"({"optimizer": {"lr": 0.01, "betas": [0.9, 0.999]},
                                                "name": "x", "losses": [{"weight": 1}]})");
  Config cfg = Config::load(path);
  cfg.set_all({"optimizer.lr=0.5", "name=unet", "optimizer.betas=[0.8, 0.9]", "device=cuda:1", "flag=true",
               "optimizer.nesterov=false", "losses[0].weight=2", "model.backbone.depth=50", "tag=\"007\""});
  Config opt = cfg.sub("optimizer");
  EXPECT_DOUBLE_EQ(opt.get<double>("lr"), 0.5);
  EXPECT_EQ(opt.get<std::vector<double>>("betas"), (std::vector<double>{0.8, 0.9}));
  EXPECT_FALSE(opt.get<bool>("nesterov", true));
  EXPECT_EQ(cfg.get<std::string>("name"), "unet");        // not JSON: a string
  EXPECT_EQ(cfg.get<std::string>("device"), "cuda:1");    // not JSON: a string
  EXPECT_EQ(cfg.get<std::string>("tag"), "007");          // a JSON string
  EXPECT_TRUE(cfg.get<bool>("flag"));
  EXPECT_EQ(cfg.sub_list("losses")[0].get<int64_t>("weight"), 2);
  EXPECT_EQ(cfg.get<int64_t>("model.backbone.depth"), 50);  // intermediate objects created
  cfg.finish();
}

TEST_F(ConfigTest, SetKeysNobodyReadsAreReportedAsFromSet) {
  Config cfg = Config::parse(R"({"optimizer": {"lr": 0.01}})", "c.json");
  cfg.set("optimizer.lrr=0.5");
  cfg.get<double>("optimizer.lr");
  expect_error([&] { cfg.finish(); }, {"unknown key 'optimizer.lrr' (--set optimizer.lrr=0.5)", "did you mean 'optimizer.lr'"});
}

TEST_F(ConfigTest, SetErrors) {
  Config cfg = Config::parse(R"({"lr": 0.01, "optimizer": {"lr": 0.01}, "sizes": [1, 2]})");
  expect_error([&] { cfg.set("lr"); }, {"override 'lr'", "key.path=value"});
  expect_error([&] { cfg.set("=3"); }, {"override '=3'"});
  expect_error([&] { cfg.set("lr.x=3"); }, {"'lr' is 0.01 (number), not an object", "no key 'x'"});
  expect_error([&] { cfg.set("optimizer=3"); }, {"'optimizer' is an object; set its keys instead", "optimizer.lr=..."});
  expect_error([&] { cfg.set("sizes[5]=3"); }, {"index 5 is out of range for 'sizes' (2 elements)"});
  expect_error([&] { cfg.set("lr[0]=3"); }, {"'lr' is 0.01 (number), not a list"});
  expect_error([&] { cfg.set("a..b=3"); }, {"empty key in 'a..b=3'"});
  expect_error([&] { cfg.sub("optimizer").set("lr=1"); }, {"only on the root"});
  cfg.set("optimizer={\"momentum\": 0.9}");  // an object merges into an object
  EXPECT_DOUBLE_EQ(cfg.get<double>("optimizer.lr"), 0.01);
  EXPECT_DOUBLE_EQ(cfg.get<double>("optimizer.momentum"), 0.9);
}

TEST_F(ConfigTest, KeysAndDocumentOfAView) {
  Config cfg = Config::parse(R"({"class_weights": {"road": 1.0, "car": 2.5}})");
  Config weights = cfg.sub("class_weights");
  std::vector<std::string> names = weights.keys();
  EXPECT_EQ(names, (std::vector<std::string>{"car", "road"}));
  for (const std::string& name : names) weights.get<double>(name);
  cfg.finish();
  EXPECT_EQ(weights.document().at("car").get<double>(), 2.5);
  EXPECT_EQ(nlohmann::json::parse(cfg.dump()), cfg.document());
}

TEST(ConfigEditDistance, Levenshtein) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("lr", "lr"), 0u);
  EXPECT_EQ(edit_distance("lrr", "lr"), 1u);
  EXPECT_EQ(edit_distance("momentum", "momentun"), 1u);
}

}  // namespace
}  // namespace se
